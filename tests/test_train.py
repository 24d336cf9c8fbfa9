"""Training end to end: tiny.gin, resume (budget extension, SIGKILL), NaN stop, Mirrored."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from cola_tf.runtime import configuration
from cola_tf.probe import online as evaluation
from cola_tf.runtime import training as train_lib
from conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow  # end-to-end runs in subprocesses: `-m "not slow"` skips them

TINY = "tiny"
FAST = ["SyntheticSource.num_clips = 64", "train.global_batch_size = 16",
        "train.steps_per_loop = 5", "train.checkpoint_every = 10",
        "build_adamw.warmup_steps = 5", "train.evaluation = None"]
# tiny.gin's online evaluation on a small labelled set (36 clips, 12 identities).
SMALL_EVAL = ["train.evaluation = @OnlineEvaluation()", "SyntheticEvalSet.identities_per_kind = 3",
              "SyntheticEvalSet.clips_per_identity = 3", "OnlineEvaluation.linear_epochs = 5"]


def _run_in_process(model_dir, params):
  gin.clear_config()
  configuration.parse_gin([TINY], FAST + params, model_dir)
  return train_lib.train(model_dir)


def _cli(model_dir, *params):
  args = [sys.executable, "-m", "cola_tf.train", "--gin_file", TINY, "--model_dir", model_dir]
  for p in params:
    args += ["--gin_param", p]
  return args


def test_tiny_gin_end_to_end_learns(readme_run):
  """README command 1 as users run it (the session's shared run: conftest.readme_run); its
  contrastive accuracy ends far above chance."""
  model_dir = readme_run["model_dir"]
  stdout, stderr = readme_run["stdout"], readme_run["stderr"]
  done = re.search(r"done at step 200: loss ([\d.]+), contrastive accuracy ([\d.]+) "
                   r"\(chance ([\d.]+)\)", stdout)
  assert done, stdout[-2000:]
  accuracy, chance = float(done.group(2)), float(done.group(3))
  assert chance == pytest.approx(1 / 64, abs=1e-3)
  assert accuracy > 0.4, stdout[-2000:]
  assert "failed call to cuInit" not in stderr  # no GPU here: no CUDA noise either
  assert re.search(r"step 100/200 \(50%\) \| loss [\d.]+ \| acc [\d.]+ \| lr [\d.e+-]+ \| "
                   r"[\d.]+ clips/s \| ETA \d+:\d\d:\d\d", stdout)
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-200")
  assert glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))
  operative = open(os.path.join(model_dir, "operative_config.gin")).read()
  for binding in ("train.total_steps = 200", "build_encoder.name = 'small_cnn'",
                  "LogMelFrontend.num_mel_bins = 64", "spec_augment.freq_mask_width = 10"):
    assert binding in operative
  tags = set()
  for path in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {"loss", "contrastive_accuracy", "learning_rate", "clips_per_second"} <= tags
  # Online evaluation: at the start, every 50 steps, in the log, eval.csv and TensorBoard.
  evals = re.findall(r"eval at step (\d+) \([\d.]+ s\): kind kNN ([\d.]+) linear ([\d.]+) \| "
                     r"identity kNN ([\d.]+) linear ([\d.]+)", stdout)
  assert [int(e[0]) for e in evals] == [0, 50, 100, 150, 200], stdout[-3000:]
  assert re.search(r"step 200/200 .*\| eval kind [\d.]+/[\d.]+ identity [\d.]+/[\d.]+",
                   stdout)
  rows = evaluation.read_csv(model_dir)
  assert len(rows) == 5 * 4 and {r[1] for r in rows} == {"kind", "identity"}
  eval_tags = set()
  for path in glob.glob(os.path.join(model_dir, "eval", "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      eval_tags.update(v.tag for v in event.summary.value)
  assert eval_tags == {f"{t}/{m}" for t in ("kind", "identity") for m in ("knn_top1", "linear_top1")}
  assert "online evaluation took" in stdout
  assert "exported the frozen encoder (192-d, step 200)" in stdout


def test_the_readmes_short_variant_just_runs(tmp_path):
  """README command 1 with `train.total_steps = 20` and --noexport: tiny.gin's 20 warmup
  steps become 2, with a line saying so; no export."""
  model_dir = str(tmp_path / "short")
  proc = subprocess.run([sys.executable, "-m", "cola_tf.train", "--gin_file", "gin/tiny.gin",
                         "--gin_param", "train.total_steps = 20", "--noexport", "--model_dir",
                         model_dir], cwd=REPO, env=subprocess_env(), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "warming up over 2 steps, a tenth of the run" in proc.stdout
  assert "done at step 20" in proc.stdout and "eval at step 20" in proc.stdout
  assert not os.path.exists(os.path.join(model_dir, "export"))


def test_resume_with_a_larger_budget_continues_with_saved_weights_and_state(tmp_path, clean_gin):
  """...and the online evaluation's curve continues: scores at 0 and 20, then at 30."""
  model_dir = str(tmp_path / "resume")
  first = _run_in_process(model_dir, ["train.total_steps = 20"] + SMALL_EVAL)
  assert first["step"] == 20 and first["start_step"] == 0
  def values(variables):
    named = {v.name: v.numpy() for v in variables}
    assert len(named) == len(variables)
    return named

  saved = values(first["model"].weights)
  slots = values(first["optimizer"].variables())

  # Same budget again: nothing to train; what is loaded is exactly what was saved.
  same = _run_in_process(model_dir, ["train.total_steps = 20"] + SMALL_EVAL)
  assert same["start_step"] == 20 and same["history"] == []
  for before, after in ((saved, values(same["model"].weights)),
                        (slots, values(same["optimizer"].variables()))):
    assert before.keys() == after.keys()
    for name in before:
      np.testing.assert_array_equal(before[name], after[name], err_msg=name)

  longer = _run_in_process(model_dir, ["train.total_steps = 30"] + SMALL_EVAL)
  assert longer["start_step"] == 20 and longer["step"] == 30
  assert sorted({r[0] for r in evaluation.read_csv(model_dir)}) == [0, 20, 30]
  assert [h[0] for h in longer["history"]] == [25, 30]
  opt = longer["optimizer"]
  assert int(opt.iterations.numpy()) == 30
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-30")


def _latest_step(model_dir):
  latest = tf.train.latest_checkpoint(model_dir)
  return int(latest.rsplit("-", 1)[1]) if latest else -1


def test_sigkill_mid_run_resumes_from_the_last_checkpoint(tmp_path):
  model_dir = str(tmp_path / "killed")
  params = FAST + ["train.total_steps = 60"]
  proc = subprocess.Popen(_cli(model_dir, *params), cwd=REPO, env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  # Killed once the checkpoint list names ckpt-20 (its files appear before the list does).
  deadline = time.time() + 300
  while time.time() < deadline and _latest_step(model_dir) < 20:
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = int(tf.train.latest_checkpoint(model_dir).rsplit("-", 1)[1])
  assert 20 <= killed_at < 60
  # Restart with no gin file at all: the operative config in model_dir is reloaded.
  args = [sys.executable, "-m", "cola_tf.train", "--model_dir", model_dir]
  again = subprocess.run(args, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert f"resumed from {os.path.join(model_dir, f'ckpt-{killed_at}')} at step {killed_at}" \
      in again.stdout
  assert "done at step 60" in again.stdout


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                               clean_gin):
  model_dir = str(tmp_path / "nan")
  assert _run_in_process(model_dir, ["train.total_steps = 10"])["step"] == 10
  good = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-10"))
  bad = subprocess.run(_cli(model_dir, "train.total_steps = 40", "build_adamw.learning_rate = 1e30",
                            "build_adamw.warmup_steps = 0"),
                       cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert bad.returncode == 1
  assert re.search(r"ERROR: loss became nan between steps 10 and \d+; stopping\. The last good "
                   r"checkpoint \(.*ckpt-10\) is kept", bad.stdout), bad.stdout[-2000:]
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-10")
  after = tf.train.load_checkpoint(os.path.join(model_dir, "ckpt-10"))
  for name in good.get_variable_to_shape_map():
    np.testing.assert_array_equal(good.get_tensor(name), after.get_tensor(name))


def test_mirrored_two_devices_global_negatives_loss_goes_down(tmp_path):
  # A fresh process: collectives of other tests' strategies must not share its instance keys.
  out = str(tmp_path / "result")
  params = FAST + ["train.strategy = 'mirrored'", "train.devices = ['/cpu:0', '/cpu:1']",
                   "train.negatives = 'global'", "train.total_steps = 80",
                   "train.steps_per_loop = 10", "train.global_batch_size = 32"]
  proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "train_worker.py"),
                         str(tmp_path / "mirrored"), out, "2", TINY, *params], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "2 replica(s), global batch 32 (16 per replica), 31 negatives/anchor" in proc.stdout
  assert "WARNING: global negatives with small_cnn's BatchNorm" in proc.stdout
  with open(out + ".json") as f:
    result = json.load(f)
  losses = [h[1] for h in result["history"]]
  assert len(losses) == 8 and all(np.isfinite(losses))
  # Chance is ln(32) = 3.47 with 31 negatives; the recipe's small bilinear init starts there.
  assert np.mean(losses[-2:]) < 0.85 * np.log(32) and losses[-1] < losses[0], losses
  assert result["accuracy"] > 3 / 32
  masks = np.load(out + "-masks.npy")  # DropPath on the two replicas of one process
  assert masks.shape == (2, 64, 1) and not np.array_equal(masks[0], masks[1])


def test_cli_splits_the_cpu_into_replicas(tmp_path):
  """train.cpu_replicas: a multi-replica run on a CPU-only machine, straight from the CLI."""
  proc = subprocess.run(_cli(str(tmp_path / "run"), *FAST, "train.total_steps = 10",
                             "train.global_batch_size = 32", "train.strategy = 'mirrored'",
                             "train.cpu_replicas = 2") + ["--noexport"],
                        cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "2 replica(s), global batch 32 (16 per replica), 15 negatives/anchor" in proc.stdout
  assert "done at step 10" in proc.stdout
  assert "WARNING: global negatives" not in proc.stdout  # replica negatives: no warning


def test_bad_configuration_errors_name_the_setting(tmp_path, clean_gin):
  with pytest.raises(ValueError, match="train.negatives"):
    _run_in_process(str(tmp_path / "a"), ["train.negatives = 'all'"])
  with pytest.raises(ValueError, match="global_batch_size=15 is not divisible"):
    _run_in_process(str(tmp_path / "b"), ["train.strategy = 'mirrored'",
                                           "train.devices = ['/cpu:0', '/cpu:1']",
                                           "train.global_batch_size = 15"])
  with pytest.raises(ValueError, match="FolderSource.root"):
    _run_in_process(str(tmp_path / "c"), ["train.source = @FolderSource()",
                                           f"FolderSource.root = '{tmp_path}/missing'"])
  with pytest.raises(ValueError, match="cpu_replicas needs train.strategy='mirrored'"):
    _run_in_process(str(tmp_path / "d"), ["train.cpu_replicas = 2"])
  with pytest.raises(ValueError, match="must be split before TensorFlow starts"):
    _run_in_process(str(tmp_path / "e"), ["train.strategy = 'mirrored'",
                                           "train.cpu_replicas = 3"])
  gin.clear_config()
  with pytest.raises(ValueError, match="no gin config"):
    configuration.parse_gin([], [], str(tmp_path / "empty"))
