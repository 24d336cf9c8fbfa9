"""A graceful stop on SIGTERM (preemptible TPU VMs, Kubernetes, Slurm) and SIGINT (Ctrl-C).

The command lines call `block_signals()` first, before TensorFlow starts its threads: the two
signals are then blocked in every thread but one, which waits for them (`signal.sigwait`)
and acts at once, whatever the main thread is doing (a Python handler would wait until the
main thread leaves a TensorFlow call: up to a whole loop of steps):
* while training (`StopOnSignal()`), the first signal is acknowledged on the spot and sets
  `received`; the loop in flight finishes, a checkpoint is saved at the step reached and
  `StopRequested` is raised, whose `exit_code` the command line exits with: 128 + the signal
  number (143 for SIGTERM, 130 for SIGINT). A second signal ends the process at once with
  that code, saying which checkpoint the rerun will resume from. No traceback, ever.
* outside training (start-up, export, generating a corpus), a signal interrupts the main
  thread (KeyboardInterrupt: staging folders are removed on the way out) and the command line
  exits with 128 + N (`interrupted_by()`); a second one ends the process at once.
Where `block_signals()` was not called (the library used in-process), `StopOnSignal`
installs Python handlers instead, with the same first-signal behaviour.
"""
import _thread
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
  """The run stopped on a signal after saving a checkpoint at `step`."""

  def __init__(self, signum, step, checkpoint):
    self.signal_name = signal.Signals(signum).name
    self.step = step
    self.exit_code = 128 + int(signum)
    super().__init__(f"stopped on {self.signal_name} at step {step}; checkpoint {checkpoint} "
                     f"saved; run the same command to resume (exit code {self.exit_code})")


class _Watcher:
  """The thread that receives the blocked signals (see the module docstring)."""

  def __init__(self):
    self.active = None  # the StopOnSignal in force, if any
    self.interrupted = None  # a signal that interrupted the main thread outside training
    threading.Thread(target=self._run, name="cola_tf-signals", daemon=True).start()

  def _run(self):
    while True:
      signum = signal.sigwait(SIGNALS)
      active = self.active
      if active is not None:
        active.deliver(signum)
      elif self.interrupted is None:
        self.interrupted = signum
        _say(f"{signal.Signals(signum).name} received: stopping")
        # Through SIGTERM's Python handler (block_signals installs it): SIGINT's may be
        # SIG_IGN, inherited from a shell that ran us in the background, and interrupt_main
        # does nothing for an ignored signal.
        _thread.interrupt_main(signal.SIGTERM)
      else:
        _exit_now(signum, "stopped at once")


_WATCHER = None


def block_signals():
  """Blocks SIGTERM and SIGINT in this thread and those started after it, and starts the
  thread that receives them. Call it before importing TensorFlow."""
  global _WATCHER
  if _WATCHER is None:
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    # Blocked everywhere, SIGTERM never reaches this handler from outside: only the signal
    # thread's interrupt_main(SIGTERM) runs it, in the main thread.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    _WATCHER = _Watcher()


def _raise_keyboard_interrupt(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt


def interrupt_on_signals(signals=SIGNALS):
  """For command lines without the signal thread (hear_eval, make_tfrecords): `signals`
  raise KeyboardInterrupt in the main thread, and SIGTERM / SIGINT are unblocked (a blocked
  mask is inherited across exec from a parent that called block_signals, and would leave
  the command deaf). Returns a function giving the signal received (SIGINT if none was
  recorded: a Ctrl-C through Python's own handler)."""
  received = []

  def interrupt(signum, _):
    received.append(signum)
    raise KeyboardInterrupt

  for signum in signals:
    signal.signal(signum, interrupt)
  signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
  return lambda: signal.Signals(received[0] if received else signal.SIGINT)


def interrupted_by():
  """The signal that interrupted the main thread outside training (None if none)."""
  return _WATCHER.interrupted if _WATCHER is not None else None


def _say(message):
  print(f"[cola_tf] {message}", flush=True)


def _exit_now(signum, what):
  _say(f"{signal.Signals(signum).name} again: {what} (exit code {128 + int(signum)})")
  sys.stdout.flush()
  os._exit(128 + int(signum))  # pylint: disable=protected-access


class StopOnSignal:
  """Context manager: SIGTERM / SIGINT set `received` (the signal number) instead of killing;
  a second one ends the process at once, naming `saved()` (the checkpoint a rerun resumes
  from). Received by the signal thread after `block_signals()`, else by Python handlers
  (main thread only; elsewhere it does nothing)."""

  def __init__(self, log=print):
    self.received = None
    self.saved = lambda: None  # set by the trainer once it has a checkpoint manager
    self._log = log
    self._previous = {}

  def __enter__(self):
    if _WATCHER is not None:
      _WATCHER.active = self
    elif threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def deliver(self, signum):
    if self.received is not None:
      _exit_now(signum, f"stopped at once; the last checkpoint, {self.saved()}, is where the "
                        "same command resumes")
    self.received = signum
    self._log(f"{signal.Signals(signum).name} received: finishing the steps in flight, then "
              "saving a checkpoint (send it again to stop at once)")

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.received is not None:  # asked twice: stop now, the signal's own way
      signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
      os.kill(os.getpid(), signum)
      return
    self.deliver(signum)

  def __exit__(self, *exc):
    if _WATCHER is not None and _WATCHER.active is self:
      _WATCHER.active = None
      if self.received is not None:  # stopping: a further signal ends the process at once
        _WATCHER.interrupted = self.received
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
    return False
