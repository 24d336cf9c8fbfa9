"""One trainer per model_dir: a lock file that names its owner (host, pid), refreshed while
the run lives, so a second trainer is refused with a clear error and a lock left behind by a
killed run does not block the restart.

Liveness: on the same host the owner's pid is checked; from another host (a shared gs://
model_dir) a lock whose heartbeat is older than `stale_after_s` counts as left behind. The
check happens at start; two trainers started within the same second can both pass it, so
the lock is read back after writing and a lost race is refused too.
"""
import json
import os
import socket
import time

import tensorflow as tf

from cola_tf import files

LOCK_FILE = "cola_tf.lock"


class ModelDirBusyError(RuntimeError):
  """Another live trainer owns the model_dir."""


def _alive(owner, stale_after_s):
  if owner.get("host") == socket.gethostname():
    try:
      os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
      return False
    except PermissionError:  # exists, another user's
      return True
    return True
  return time.time() - float(owner.get("heartbeat", 0)) < stale_after_s


class ModelDirLock:
  """Context manager; `heartbeat()` refreshes the lock (rate-limited to `refresh_s`)."""

  def __init__(self, model_dir, log=print, stale_after_s=600.0, refresh_s=60.0):
    self.path = os.path.join(model_dir, LOCK_FILE)
    self.me = {"host": socket.gethostname(), "pid": os.getpid()}
    self._log = log
    self._stale_after_s = stale_after_s
    self._refresh_s = refresh_s
    self._written = 0.0

  def _read(self):
    try:
      with tf.io.gfile.GFile(self.path) as f:
        return json.load(f)
    except (tf.errors.NotFoundError, ValueError):
      return None

  def _write(self):
    files.atomic_write(self.path, json.dumps({**self.me, "heartbeat": time.time()}))
    self._written = time.time()

  def _mine(self, owner):
    return owner is not None and all(owner.get(k) == v for k, v in self.me.items())

  def __enter__(self):
    owner = self._read()
    if owner is not None and not self._mine(owner):
      if _alive(owner, self._stale_after_s):
        raise ModelDirBusyError(
            f"model_dir {os.path.dirname(self.path)} is in use by another trainer (pid "
            f"{owner.get('pid')} on {owner.get('host')}): stop it or use another --model_dir")
      self._log(f"taking over the lock of a run that is gone (pid {owner.get('pid')} on "
                f"{owner.get('host')})")
    self._write()
    if not self._mine(self._read()):
      raise ModelDirBusyError(f"model_dir {os.path.dirname(self.path)}: another trainer "
                              "started at the same moment; stop one of them")
    return self

  def heartbeat(self):
    if time.time() - self._written >= self._refresh_s:
      self._write()

  def __exit__(self, *exc):
    if self._mine(self._read()):
      tf.io.gfile.remove(self.path)
    return False
