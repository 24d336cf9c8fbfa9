"""One trainer per model_dir: reused pids, another host's lock waited for, the heartbeat
thread."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from cola_tf.runtime import workdir_lock


def _write(tmp_path, **owner):
  (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(owner))


def _me():
  return workdir_lock.identity()


def test_a_reused_pid_or_an_old_boot_does_not_keep_a_dead_runs_lock(tmp_path):
  """pid 1 always runs (here: the container's init), yet its start time, or the boot id, or
  an old heartbeat shows the lock's owner is gone: taken over, with a line."""
  me = _me()
  for owner in ({**me, "pid": 1, "start_time": -5, "heartbeat": time.time()},
                {**me, "pid": 1, "start_time": None, "boot_id": "another boot",
                 "heartbeat": time.time()},
                {**me, "pid": 1, "heartbeat": time.time() - 7200}):
    _write(tmp_path, **owner)
    lines = []
    with workdir_lock.ModelDirLock(str(tmp_path), lines.append):
      assert json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(lines) == 1 and "taking over the lock of a run that is gone (pid 1" in lines[0]
    assert not (tmp_path / workdir_lock.LOCK_FILE).exists()


def test_a_live_trainer_on_this_host_is_refused_at_once(tmp_path):
  other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    time.sleep(0.2)
    _write(tmp_path, host=socket.gethostname(), pid=other.pid, boot_id=_me()["boot_id"],
           start_time=workdir_lock._start_time(other.pid), heartbeat=time.time())  # pylint: disable=protected-access
    started = time.time()
    with pytest.raises(workdir_lock.ModelDirBusyError, match=f"pid {other.pid} on"):
      with workdir_lock.ModelDirLock(str(tmp_path), print):
        pass
    assert time.time() - started < 5
  finally:
    other.kill()


def test_another_hosts_fresh_lock_is_waited_for_then_taken_over(tmp_path):
  _write(tmp_path, host="another-host", pid=4242, heartbeat=time.time())
  with pytest.raises(workdir_lock.ModelDirBusyError, match="another-host"):
    with workdir_lock.ModelDirLock(str(tmp_path), print, stale_after_s=1.5, wait=False):
      pass
  lines = []
  started = time.time()
  with workdir_lock.ModelDirLock(str(tmp_path), lines.append, stale_after_s=1.5, poll_s=0.1):
    waited = time.time() - started
  assert 1.0 < waited < 10
  assert len(lines) == 2 and lines[0].startswith("waiting for the trainer on another-host")
  assert "taking over" in lines[1]


def test_the_heartbeat_thread_keeps_the_lock_fresh(tmp_path):
  with workdir_lock.ModelDirLock(str(tmp_path), print, refresh_s=0.2):
    first = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())["heartbeat"]
    time.sleep(0.7)  # the main thread does nothing: the thread beats
    later = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())["heartbeat"]
    assert later > first
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()
