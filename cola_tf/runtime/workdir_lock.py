"""One trainer per model_dir: a lock file that names its owner, kept fresh by a heartbeat
thread while the run lives, so a second trainer is refused (or waits) with a clear line and a
lock left behind by a killed run never blocks the restart.

The lock (`cola_tf.lock`) holds the owner's host, pid, boot id and process start time, and a
heartbeat written every `refresh_s` seconds by a background thread (also while the main
thread is inside a long TensorFlow call: a TPU compilation, a loop of steps).
* A lock whose heartbeat is older than `stale_after_s` (a few missed beats) is stale on any
  host: its owner is gone.
* On the same host a fresher lock is live only if its pid runs with the same boot id and
  start time: a pid reused after a container restart does not keep a dead run's lock.
* A live lock of this host refuses the new trainer at once (`ModelDirBusyError`); a fresh
  lock of another host (a shared gs:// model_dir; a chief rescheduled elsewhere after a hard
  kill) is waited for, with one line saying so, until it goes stale, then taken over, unless
  `wait` is False (then: `ModelDirBusyError` at once).
Two trainers starting in the same second can both see no lock, so the lock is read back
after writing and a lost race is refused.
"""
import json
import os
import socket
import threading
import time

# No TensorFlow at import: a command line refuses a busy folder before it starts TensorFlow
# (seconds); gs:// and other remote folders import it when they are used.

LOCK_FILE = "cola_tf.lock"
# hear_eval locks its --work folder (ModelDirLock's `user`): who, the flag, no waiting.
HEAR_EVAL = ("hear_eval", "--work", "")


class ModelDirBusyError(RuntimeError):
  """Another live trainer owns the model_dir."""


def _boot_id():
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return None


def _start_time(pid):
  """The process's start time in clock ticks since boot (None where /proc is missing)."""
  try:
    with open(f"/proc/{int(pid)}/stat") as f:
      return int(f.read().rsplit(")", 1)[1].split()[19])
  except (OSError, ValueError, IndexError):
    return None


def _pid_runs(pid):
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, another user's
    return True
  return True


def identity():
  """This process, as a lock records it."""
  pid = os.getpid()
  return {"host": socket.gethostname(), "pid": pid, "boot_id": _boot_id(),
          "start_time": _start_time(pid)}


def age_s(owner):
  return time.time() - float(owner.get("heartbeat", 0))


def live(owner, stale_after_s):
  """Whether the lock's owner still runs (see the module docstring)."""
  if age_s(owner) >= stale_after_s:
    return False
  if owner.get("host") != socket.gethostname():
    return True
  if owner.get("boot_id") and owner.get("boot_id") != _boot_id():
    return False  # written before this machine (or container) booted
  if not _pid_runs(owner.get("pid", -1)):
    return False
  start = owner.get("start_time")
  return start is None or start == _start_time(owner["pid"])


class ModelDirLock:
  """Context manager holding model_dir's lock, its heartbeat refreshed every `refresh_s` by a
  daemon thread; `heartbeat()` refreshes it from the caller too (rate-limited)."""

  def __init__(self, model_dir, log=print, stale_after_s=120.0, refresh_s=30.0, wait=True,
               poll_s=10.0, user=("trainer", "--model_dir", "train.wait_for_lock = False")):
    """user: who holds such locks, the flag naming the folder, and what makes it fail at once
    instead of waiting (hear_eval locks its --work with this class too)."""
    self.path = os.path.join(model_dir, LOCK_FILE)
    self._remote = "://" in self.path  # files.is_url (that module starts TensorFlow)
    self._user, self._flag, self._no_wait = user
    self.me = identity()
    self._log, self._wait, self._poll_s = log, wait, poll_s
    self._stale_after_s, self._refresh_s = stale_after_s, refresh_s
    self._written = 0.0
    self._stop = threading.Event()
    self._thread = None
    self._write_lock = threading.Lock()

  def _read(self):
    try:
      if not self._remote:
        with open(self.path) as f:
          return json.load(f)
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      try:
        with tf.io.gfile.GFile(self.path) as f:
          return json.load(f)
      except tf.errors.NotFoundError:
        return None
    except (FileNotFoundError, ValueError):
      return None

  def _write(self):
    from cola_tf import files  # pylint: disable=import-outside-toplevel
    with self._write_lock:
      files.atomic_write(self.path, json.dumps({**self.me, "heartbeat": time.time()}))
      self._written = time.time()

  def check_free(self):
    """ModelDirBusyError at once when another live process holds the lock (what entering
    with wait=False would raise), without taking it."""
    owner = self._read()
    if owner is not None and not self._mine(owner) and live(owner, self._stale_after_s):
      raise self._busy(owner)

  def _mine(self, owner):
    return owner is not None and all(owner.get(k) == self.me[k] for k in ("host", "pid"))

  def _busy(self, owner):
    return ModelDirBusyError(
        f"{self._flag.lstrip('-')} {os.path.dirname(self.path)} is in use by another "
        f"{self._user} (pid {owner.get('pid')} on {owner.get('host')}, last heartbeat "
        f"{age_s(owner):.0f} s ago): stop it or use another {self._flag}")

  def _wait_until_free(self):
    """Returns once no live lock of another trainer is left (waiting for another host's)."""
    told = False
    while True:
      owner = self._read()
      if owner is None or self._mine(owner) or not live(owner, self._stale_after_s):
        if owner is not None and not self._mine(owner):
          self._log(f"taking over the lock of a run that is gone (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, last heartbeat {age_s(owner):.0f} s ago)")
        return
      if owner.get("host") == self.me["host"] or not self._wait:
        raise self._busy(owner)
      if not told:
        self._log(f"waiting for the {self._user} on {owner.get('host')} (pid "
                  f"{owner.get('pid')}), last heartbeat {age_s(owner):.0f} s ago: its lock is "
                  f"taken over once {self._stale_after_s:.0f} s pass without one "
                  f"({self._no_wait} fails at once instead)")
        told = True
      time.sleep(self._poll_s)

  def __enter__(self):
    self._wait_until_free()
    self._write()
    if not self._mine(self._read()):
      raise ModelDirBusyError(f"{self._flag.lstrip('-')} {os.path.dirname(self.path)}: another "
                              f"{self._user} started at the same moment; stop one of them")
    self._thread = threading.Thread(target=self._beat, name="cola_tf-lock-heartbeat",
                                    daemon=True)
    self._thread.start()
    return self

  def _beat(self):
    while not self._stop.wait(self._refresh_s):
      try:
        self._write()
      except Exception:  # pylint: disable=broad-except  (a missed beat is retried)
        pass

  def heartbeat(self):
    if time.time() - self._written >= self._refresh_s:
      self._write()

  def __exit__(self, *exc):
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
    if self._mine(self._read()):
      if self._remote:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.io.gfile.remove(self.path)
      else:
        os.remove(self.path)
    return False
