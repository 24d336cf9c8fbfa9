"""Two MultiWorkerMirroredStrategy processes on 127.0.0.1 end with identical weights, and
resume together from the chief's checkpoint."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from cola_tf.data import synthetic
from cola_tf.probe import eval_sets
from conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow  # end-to-end runs in subprocesses: `-m "not slow"` skips them


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _run_workers(tmp_path, cluster, model_dir, total_steps):
  params = ["train.strategy = 'multi_worker_mirrored'", "SyntheticSource.num_clips = 64",
            "train.global_batch_size = 16", f"train.total_steps = {total_steps}",
            "train.steps_per_loop = 3", "train.checkpoint_every = 3",
            "build_adamw.warmup_steps = 2", "train.negatives = 'global'",
            # Online evaluation on both workers (collective embedding, the chief scores).
            "SyntheticEvalSet.identities_per_kind = 3", "SyntheticEvalSet.clips_per_identity = 3",
            "OnlineEvaluation.linear_epochs = 5"]
  procs = []
  for index in range(2):
    env = subprocess_env()
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    args = [sys.executable, os.path.join(REPO, "tests", "train_worker.py"), model_dir,
            str(tmp_path / f"weights{index}"), "1", "tiny",
            *params]
    procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  try:
    outputs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
  return outputs


def test_two_workers_train_in_lockstep_and_resume_from_the_chief(tmp_path):
  synthetic.SyntheticSource(num_clips=64)  # generate once, before both workers start
  eval_sets.SyntheticEvalSet(identities_per_kind=3, clips_per_identity=3)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  model_dir = str(tmp_path / "mwms")
  outputs = _run_workers(tmp_path, cluster, model_dir, 3)
  assert "2 replica(s), global batch 16 (8 per replica), 15 negatives/anchor" in outputs[0]
  assert "done at step 3" in outputs[0] and "done at step 3" in outputs[1]
  assert "eval at step 0" in outputs[0] and "eval at step 3" in outputs[0]  # the chief scores
  assert "eval at step" not in outputs[1]
  # The chief checkpointed into model_dir; the other worker's scratch dir is gone.
  assert os.path.exists(os.path.join(model_dir, "ckpt-3.index"))
  assert not os.path.exists(os.path.join(model_dir, ".workers", "worker_1"))
  # A larger budget: both workers restore the chief's ckpt-3 (the other worker's own folder
  # was deleted) and continue in lockstep.
  outputs = _run_workers(tmp_path, cluster, model_dir, 6)
  for out in outputs:
    assert "ckpt-3 at step 3" in out and "done at step 6" in out, out[-3000:]
  with open(os.path.join(model_dir, "eval.csv")) as f:
    assert [line.split(",")[0] for line in f][1:] == ["0"] * 4 + ["3"] * 4 + ["6"] * 4
  w0, w1 = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
  assert sorted(w0.files) == sorted(w1.files) and len(w0.files) > 10
  for name in w0.files:
    np.testing.assert_array_equal(w0[name], w1[name], err_msg=name)
  assert os.path.exists(os.path.join(model_dir, "ckpt-6.index"))
  # DropPath: the same graph and seeds on both workers, yet each replica its own masks.
  m0, m1 = (np.load(tmp_path / f"weights{i}-masks.npy") for i in range(2))
  assert m0.shape == (1, 64, 1) and 0 < m0.mean() < 2  # half dropped, kept ones scaled by 2
  assert not np.array_equal(m0, m1)


def test_sigterm_to_one_worker_stops_every_worker_at_the_same_step(tmp_path):
  """Saving is collective: a preempted worker's SIGTERM is agreed on by all-reduce after the
  loop, so every worker saves at the same step and exits 143; the rerun resumes there."""
  import re  # pylint: disable=import-outside-toplevel
  import signal  # pylint: disable=import-outside-toplevel
  synthetic.SyntheticSource(num_clips=64)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  model_dir = str(tmp_path / "mwms")

  def start(total_steps):
    procs = []
    for index in range(2):
      env = subprocess_env()
      env["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                     "task": {"type": "worker", "index": index}})
      args = [sys.executable, "-m", "cola_tf.train", "--gin_file",
              "tiny", "--model_dir", model_dir, "--noexport"]
      for p in ("train.strategy = 'multi_worker_mirrored'", "SyntheticSource.num_clips = 64",
                "train.global_batch_size = 16", f"train.total_steps = {total_steps}",
                "train.steps_per_loop = 2", "train.checkpoint_every = 1000",
                "build_adamw.warmup_steps = 2", "train.evaluation = None"):
        args += ["--gin_param", p]
      procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True))
    return procs

  procs = start(2000)
  try:
    seen = ""
    while "step 6/2000" not in seen:
      line = procs[1].stdout.readline()
      assert line, seen[-3000:]
      seen += line
    procs[1].send_signal(signal.SIGTERM)  # the non-chief worker only
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    outputs[1] = seen + outputs[1]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  steps = []
  for p, out in zip(procs, outputs):
    assert p.returncode == 143, out[-3000:]
    stopped = re.search(r"stopped on SIGTERM at step (\d+)", out)
    assert stopped, out[-3000:]
    steps.append(int(stopped.group(1)))
  assert steps[0] == steps[1] and 6 <= steps[0] < 1000
  procs = start(steps[0] + 2)
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
    assert f"ckpt-{steps[0]} at step {steps[0]}" in out and f"done at step {steps[0] + 2}" in out
