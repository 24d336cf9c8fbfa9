"""The HEAR harness's commands as children a researcher can watch and stop: each child's
output goes to a log file, the terminal gets a short progress line now and then, and an
interrupt ends the child's whole process group (its data-loader workers too), so nothing is
left running after `python -m cola_tf.hear_eval` stops.

The children start in a session of their own: a Ctrl-C in the terminal reaches hear_eval
only, which stops them (SIGTERM, then SIGKILL after a grace period) before it exits.
"""
import os
import signal
import subprocess
import time

from cola_tf.hear import tasks as hear_tasks
from cola_tf import logs

PROGRESS_EVERY_S = 20.0
TAIL_LINES = 25


def tail(path, lines=TAIL_LINES, max_bytes=65536):
  """The last `lines` lines of a text file (reads at most its last max_bytes)."""
  with open(path, "rb") as f:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - max_bytes))
    return f.read().decode("utf-8", "replace").splitlines()[-lines:]


def run_logged(args, env, log_path, stage, progress=None, cwd=None,
               every_s=PROGRESS_EVERY_S):
  """Runs `args` with stdout and stderr appended to log_path; prints `STAGE: progress()`
  when it changes (at most every every_s) and `STAGE: done in H:MM:SS` at the end. A failing
  child raises SystemExit with the log's last lines; any exception here (KeyboardInterrupt
  from a signal included) stops the child's process group first."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  hear_tasks.log(f"{stage}: running (output in {log_path})")
  started = time.time()
  with open(log_path, "a") as log:
    log.write(f"\n$ {' '.join(args)}\n")
    log.flush()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
      _watch(proc, stage, progress, every_s)
    except BaseException:
      stop_group(proc)
      raise
  if proc.returncode:
    last = "\n".join("    " + line for line in tail(log_path))
    raise SystemExit(f"[hear_eval] {stage} failed (exit {proc.returncode}); the end of "
                     f"{log_path}:\n{last}")
  hear_tasks.log(f"{stage}: done in {logs.format_seconds(time.time() - started)}")


def _watch(proc, stage, progress, every_s):
  shown_line, shown_at = None, 0.0
  while proc.poll() is None:
    time.sleep(0.5)
    if progress is not None and time.time() - shown_at >= every_s:
      line = progress()
      if line and line != shown_line:
        hear_tasks.log(f"{stage}: {line}")
        shown_line, shown_at = line, time.time()


def stop_group(proc, grace_s=10.0):
  """SIGTERM to the child's process group, SIGKILL to what is left after grace_s."""
  try:
    os.killpg(proc.pid, signal.SIGTERM)
  except ProcessLookupError:
    return
  try:
    proc.wait(grace_s)
  except subprocess.TimeoutExpired:
    pass
  try:  # workers can outlive their leader: the group, not only the pid
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()
