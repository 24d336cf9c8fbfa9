"""Runs that survive clusters: SIGTERM/SIGINT save and resume, one trainer per model_dir,
fatal errors end the process at once with one line, finished runs say so, clipping after the
all-reduce, and configuration errors that name the setting."""
import glob
import logging
import os
import re
import signal
import subprocess
import sys
import time

import gin
import pytest
import tensorflow as tf

from cola_tf.runtime import configuration
from cola_tf.runtime import training as train_lib
from cola_tf.data import tfrecord_source
from cola_tf.data import tfrecord_writer
from cola_tf.data import synthetic
from conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow  # end-to-end runs in subprocesses: `-m "not slow"` skips them

TINY = "tiny"
FAST = ["SyntheticSource.num_clips = 64", "train.global_batch_size = 16",
        "train.steps_per_loop = 2", "train.checkpoint_every = 1000",
        "build_adamw.warmup_steps = 5", "train.evaluation = None"]


def _cli(model_dir, *params, gin_file=TINY):
  args = [sys.executable, "-m", "cola_tf.train", "--gin_file", gin_file, "--model_dir",
          model_dir, "--noexport"]
  for p in ("train.evaluation = None",) + params:  # no online evaluation unless asked
    args += ["--gin_param", p]
  return args


def _wait_for(proc, pattern, timeout=300):
  """Reads proc's stdout until a line matches; returns everything read."""
  seen, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = proc.stdout.readline()
    if not line:
      break
    seen.append(line)
    if re.search(pattern, line):
      return "".join(seen)
  raise AssertionError(f"never saw {pattern!r}:\n" + "".join(seen)[-3000:])


def _stop_with(proc, signum, model_dir):
  """Sends signum to a running trainer; checks its one-line stop, exit code, checkpoint,
  released lock and the stop loop's summaries; returns the step it stopped at."""
  try:
    proc.send_signal(signum)
    rest = proc.communicate(timeout=300)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 128 + signum, rest[-3000:]
  name = signal.Signals(signum).name
  stopped = re.search(rf"stopped on {name} at step (\d+); checkpoint (\S+) saved", rest)
  assert stopped, rest[-3000:]
  step = int(stopped.group(1))
  assert "In call to configurable" not in rest  # the stop is one line, no gin context
  assert step < 1000 and step % 2 == 0  # the loop in flight finished; not a periodic save
  assert tf.train.latest_checkpoint(model_dir).endswith(f"ckpt-{step}")
  assert not os.path.exists(os.path.join(model_dir, "cola_tf.lock"))  # released on the way out
  # The summaries of the loop that ended in the stop are written too (the stop step's).
  summary_steps = set()
  for path in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      if any(v.tag == "loss" for v in event.summary.value):
        summary_steps.add(event.step)
  assert max(summary_steps) == step, (sorted(summary_steps)[-3:], step)
  return step


def test_sigterm_and_sigint_save_the_step_reached_and_each_rerun_resumes_there(tmp_path):
  """SIGTERM stops a run with a checkpoint at the step reached; the rerun resumes there and
  SIGINT stops it likewise; the last rerun resumes and finishes. Also: a second trainer on
  the busy model_dir is refused, and nothing is lost."""
  model_dir = str(tmp_path / "run")
  params = FAST + ["train.total_steps = 4000"]
  first = subprocess.Popen(_cli(model_dir, *params), cwd=REPO, env=subprocess_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  second = None
  try:
    _wait_for(first, r"step 6/4000")
    second = subprocess.run(_cli(model_dir, *params), cwd=REPO, env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
  finally:
    if second is None and first.poll() is None:
      first.kill()
  assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
  assert f"model_dir {model_dir} is in use by another trainer (pid {first.pid}" \
      in second.stdout
  assert "Traceback" not in second.stdout + second.stderr
  step = _stop_with(first, signal.SIGTERM, model_dir)
  assert step > 6
  resumed = subprocess.Popen(_cli(model_dir, *params), cwd=REPO, env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  seen = _wait_for(resumed, rf"step {step + 4}/4000")
  assert f"at step {step}" in seen, seen[-3000:]
  interrupted = _stop_with(resumed, signal.SIGINT, model_dir)
  assert interrupted >= step + 4
  again = subprocess.run(_cli(model_dir, *FAST, f"train.total_steps = {interrupted + 4}"),
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert f"at step {interrupted}" in again.stdout
  assert f"done at step {interrupted + 4}" in again.stdout


def test_sigterm_while_generating_the_corpus_leaves_no_staging_folder(tmp_path):
  """Corpus generation (before training starts) is interruptible: exit 143 in one line, the
  staging folder removed, no corpus left half-written."""
  cache = tmp_path / "cache"
  # Started as a shell starts a background job (`cmd &`, nohup): SIGINT ignored, which the
  # trainer inherits; a SIGTERM must still stop it.
  proc = subprocess.Popen(_cli(str(tmp_path / "run"), "SyntheticSource.num_clips = 5000",
                               f"SyntheticSource.cache_dir = '{cache}'"),
                          cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
  try:
    _wait_for(proc, r"generating the embedded synthetic corpus")
    time.sleep(1.0)
    assert glob.glob(str(cache / ".synthetic-*" / "*.wav")), "generation should be under way"
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143, rest[-3000:]
  assert "stopped on SIGTERM before training started" in rest and "Traceback" not in rest, rest
  assert os.listdir(cache) == [], os.listdir(cache)


def _records(tmp_path, num_clips=32):
  clips = synthetic.SyntheticSource(num_clips=num_clips, seconds=2.0, seed=3,
                                    cache_dir=str(tmp_path / "clips"))
  manifest = tmp_path / "m.csv"
  manifest.write_text("files\n" + "".join(f + "\n" for f in clips.files()))
  out = str(tmp_path / "records")
  tfrecord_writer.make_tfrecords(str(manifest), out, 2, workers=1)
  return clips, out


def test_a_truncated_shard_is_skipped_and_named_and_the_run_goes_on(tmp_path):
  """A truncated TFRecord shard used to end the run (DataLossError)."""
  _, out = _records(tmp_path)
  shard = sorted(glob.glob(os.path.join(out, "*.tfrecord")))[0]
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 2)
  proc = subprocess.run(
      _cli(str(tmp_path / "run"), "train.source = @TFRecordSource()",
           f"TFRecordSource.pattern = '{out}/*.tfrecord'", "train.global_batch_size = 8",
           "train.total_steps = 12", "train.steps_per_loop = 2", "build_adamw.warmup_steps = 2"),
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "done at step 12" in proc.stdout
  assert re.search(rf"TFRecord shard \"?{re.escape(shard)}\"? ended after \d+ of 16 records",
                   proc.stderr), proc.stderr[-3000:]


def test_a_fatal_input_error_ends_the_process_at_once_with_one_line(tmp_path):
  """Every clip vanishing mid-run (an unmounted disk) is fatal: one line, exit 1, at once,
  not a process left hanging at shutdown."""
  clips = synthetic.SyntheticSource(num_clips=32, seconds=2.0, seed=3,
                                    cache_dir=str(tmp_path / "clips"))
  folder = os.path.dirname(clips.files()[0])
  proc = subprocess.Popen(
      _cli(str(tmp_path / "run"), "train.source = @FolderSource()",
           f"FolderSource.root = '{folder}'", "train.global_batch_size = 8",
           "train.total_steps = 100000", "train.steps_per_loop = 2",
           "build_adamw.warmup_steps = 2", "pair_dataset.pair_shuffle_buffer = 1",
           "pair_dataset.cache = False"),
      cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  seen = _wait_for(proc, r"step \d+/100000")
  for path in clips.files():
    os.remove(path)
  started = time.time()
  rest, _ = proc.communicate(timeout=300)
  assert proc.returncode == 1, (seen + rest)[-3000:]
  errors = [l for l in rest.splitlines() if "ERROR:" in l]
  assert len(errors) == 1 and "no usable clip" in errors[0], rest[-3000:]
  assert time.time() - started < 200


def test_rerunning_a_finished_run_says_so_and_cleans_partial_saves(tmp_path):
  model_dir = str(tmp_path / "run")
  params = FAST + ["train.total_steps = 4", "build_adamw.warmup_steps = 1"]
  first = subprocess.run(_cli(model_dir, *params), cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=600)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  partial = os.path.join(model_dir, "ckpt-6_temp")
  os.makedirs(partial)
  again = subprocess.run(_cli(model_dir, *params), cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
  assert "already at step 4 (train.total_steps = 4): nothing to train" in again.stdout
  assert "nan" not in again.stdout
  assert not os.path.exists(partial) and "removing a partial checkpoint" in again.stdout


def test_a_bad_gin_value_is_one_line_naming_the_binding(tmp_path):
  proc = subprocess.run(_cli(str(tmp_path / "run"), "train.negatives = 'all'"), cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  errors = [l for l in proc.stdout.splitlines() if "ERROR:" in l]
  assert len(errors) == 1 and "train.negatives must be one of" in errors[0], proc.stdout
  assert "In call to configurable" not in proc.stdout + proc.stderr  # gin's context: noise
  assert "Traceback" not in proc.stdout + proc.stderr
  verbose = subprocess.run(_cli(str(tmp_path / "run"), "train.negatives = 'all'") +
                           ["--traceback"], cwd=REPO, env=subprocess_env(),
                           capture_output=True, text=True, timeout=300)
  assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_configuration_refusals_name_the_setting(tmp_path, clean_gin):
  def run(params):
    gin.clear_config()
    configuration.parse_gin([TINY], FAST + params, str(tmp_path / "x"))
    return train_lib.train(str(tmp_path / "x"))

  with pytest.raises(ValueError, match=r"global_batch_size=128 is larger than the corpus "
                                       r"\(64 clips\)"):
    run(["train.global_batch_size = 128"])
  with pytest.raises(ValueError, match="jit_compile = True with 2 replicas"):
    run(["train.strategy = 'mirrored'", "train.devices = ['/cpu:0', '/cpu:1']",
         "train.jit_compile = True"])
  for binding, message in (("train.total_steps = 'abc'", "train.total_steps must be an integer"),
                           ("train.global_batch_size = 0", "train.global_batch_size must be an"),
                           ("train.steps_per_loop = 2.5", "train.steps_per_loop must be an"),
                           ("train.crop_seconds = -1", "train.crop_seconds must be a number")):
    with pytest.raises(ValueError, match=message):
      run([binding])
  # A TPU node (remote address) cannot run Python ops on its host: refused before connecting.
  with pytest.raises(ValueError, match="cannot run on its host; write pcm16 TFRecords"):
    run(["train.strategy = 'tpu'", "train.tpu_address = 'grpc://192.0.2.1:8470'"])
  _, out = _records(tmp_path)  # pcm16 shards: decoded without Python
  records = tfrecord_source.TFRecordSource(os.path.join(out, "*.tfrecord"))
  assert records.python_free()
  train_lib._check_tpu_node_source("tpu", "grpc://192.0.2.1:8470", records)  # pylint: disable=protected-access


def test_gin_syntax_errors_exit_2_and_help_exits_0(tmp_path):
  proc = subprocess.run(_cli(str(tmp_path / "run"), "train.total_steps = = 5"), cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = [l for l in proc.stdout.splitlines() if "ERROR:" in l]
  assert len(errors) == 1 and "gin binding 'train.total_steps = = 5' does not parse" in errors[0]
  quiet_default = {k: v for k, v in subprocess_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  helped = subprocess.run([sys.executable, "-m", "cola_tf.train", "--help"], cwd=REPO,
                          env=quiet_default, capture_output=True, text=True, timeout=300)
  assert helped.returncode == 0, helped.stderr[-2000:]
  start_up = ("oneDNN", "cpu_feature_guard", "cuda drivers", "cuInit")  # 4-5 lines before
  assert not [l for l in (helped.stdout + helped.stderr).splitlines()
              if any(s in l for s in start_up)], helped.stderr
  assert "train.total_steps = None" in helped.stdout and "--gin_file" in helped.stdout
  assert "OnlineEvaluation.every = 1000" in helped.stdout and "tiny.gin" in helped.stdout


def test_gradients_are_clipped_after_the_all_reduce():
  """Replica gradients [3, 0] and [0, 4] sum to [3, 4] (norm 5): clipped to norm 1 that is
  [0.6, 0.8]; clipping each replica first (Model Garden's AdamW) would give [1, 1]. In a
  fresh process: MirroredStrategy collectives of other tests in this one would collide."""
  code = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cola_tf.runtime import trainer
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
parts = tf.constant([[3.0, 0.0], [0.0, 4.0]])

def fn():
  ctx = tf.distribute.get_replica_context()
  return trainer.aggregated_gradients([parts[ctx.replica_id_in_sync_group]], 1.0)[0]

for r in strategy.experimental_local_results(strategy.run(tf.function(fn))):
  print("RESULT", *r.numpy().tolist())
"""
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = [[float(v) for v in l.split()[1:]] for l in proc.stdout.splitlines()
             if l.startswith("RESULT")]
  assert len(results) == 2, proc.stdout
  for r in results:
    assert r == pytest.approx([0.6, 0.8], rel=1e-6), proc.stdout


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, clean_gin,
                                                                      capsys):
  """A truncated ckpt-30 (a disk filled mid-save, a bad copy): the run resumes from ckpt-20,
  names ckpt-30 on one line and moves its files aside (never deleted)."""
  model_dir = str(tmp_path / "run")
  params = FAST + ["train.checkpoint_every = 10", "train.steps_per_loop = 10"]
  configuration.parse_gin([TINY], params + ["train.total_steps = 30"], model_dir)
  assert train_lib.train(model_dir)["step"] == 30
  (data,) = glob.glob(os.path.join(model_dir, "ckpt-30.data-*"))
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)
  gin.clear_config()
  configuration.parse_gin([TINY], params + ["train.total_steps = 40"], model_dir)
  capsys.readouterr()
  warned = []
  handler = logging.Handler()
  handler.emit = lambda record: warned.append(record.getMessage())
  tf.get_logger().addHandler(handler)
  try:
    resumed = train_lib.train(model_dir)
  finally:
    tf.get_logger().removeHandler(handler)
  assert not [w for w in warned if "deprecated" in w], warned  # were 8 lines of them
  lines = capsys.readouterr().out.splitlines()
  assert (resumed["start_step"], resumed["step"]) == (20, 40)
  named = [l for l in lines if "ckpt-30 does not restore" in l]
  assert len(named) == 1 and "moved aside" in named[0], lines[:5]
  assert glob.glob(os.path.join(model_dir, "ckpt-30.data-*.unreadable-*"))
  assert glob.glob(os.path.join(model_dir, "ckpt-30.index.unreadable-*"))
  # Training on from step 20 wrote a new, readable ckpt-30, then ckpt-40.
  state = tf.train.get_checkpoint_state(model_dir)
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths][-2:] == [
      "ckpt-30", "ckpt-40"]
  tf.train.Checkpoint().read(os.path.join(model_dir, "ckpt-30")).expect_partial()
  # Resuming with another encoder: one line naming both, not the tensor shapes.
  gin.clear_config()
  configuration.parse_gin([TINY], params + ["train.total_steps = 50",
                                            "build_encoder.name = 'convnext_atto'"], model_dir)
  with pytest.raises(ValueError, match=r"was trained with encoder 'small_cnn'; the config "
                                       r"asks for 'convnext_atto'"):
    train_lib.train(model_dir)


def test_two_signals_inside_one_loop_stop_at_once_naming_the_checkpoint(tmp_path):
  """The first SIGTERM is acknowledged on the spot (not at the end of the 50-step loop), the
  second ends the process at once with 143, naming the checkpoint a rerun resumes from; no
  traceback."""
  model_dir = str(tmp_path / "run")
  proc = subprocess.Popen(_cli(model_dir, "train.steps_per_loop = 50",
                               "train.checkpoint_every = 50", "train.total_steps = 400"),
                          cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    seen = _wait_for(proc, r"step 50/400")
    time.sleep(2)  # ckpt-50 is written right after that line; the next loop takes ~15 s
    proc.send_signal(signal.SIGTERM)
    seen += _wait_for(proc, r"SIGTERM received", timeout=5)
    proc.send_signal(signal.SIGTERM)
    sent = time.time()
    rest = proc.communicate(timeout=60)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143, (seen + rest)[-3000:]
  assert time.time() - sent < 10  # at once, not at the end of the loop in flight
  assert f"the last checkpoint, {os.path.join(model_dir, 'ckpt-50')}, is where" in rest
  assert "Traceback" not in seen + rest
