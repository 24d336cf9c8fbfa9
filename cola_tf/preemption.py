"""A graceful stop on SIGTERM (preemptible TPU VMs, Kubernetes, Slurm) and SIGINT (Ctrl-C).

Inside `StopOnSignal()`, those signals only set `received`; the training loop checks it after
each call of its loop (at most `steps_per_loop` steps: a Python handler cannot run while the
main thread is inside that TensorFlow call), saves a checkpoint at the step reached and
raises `StopRequested`, whose `exit_code` the command line exits with: 128 + the signal
number, the shell's convention (143 for SIGTERM, 130 for SIGINT). A second signal while
stopping ends the process at once, as the signal's default would.
"""
import os
import signal
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


class StopOnSignal:
  """Context manager: SIGTERM / SIGINT set `received` (the signal number) instead of killing.
  Outside the main thread (where Python cannot install handlers) it does nothing."""

  def __init__(self, log=print):
    self.received = None
    self._log = log
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.received is not None:  # asked twice: stop now, the signal's own way
      signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
      os.kill(os.getpid(), signum)
      return
    self.received = signum
    self._log(f"{signal.Signals(signum).name} received: finishing the steps in flight, then "
              "saving a checkpoint (send it again to stop at once)")

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}
    return False
