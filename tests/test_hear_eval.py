"""cola_tf.hear_eval on generated tasks in hear-preprocess's layout: scene at 48 kHz, event,
k-fold; two models with one --work; resampling that resumes."""
import glob
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

import hear_task_writer
from cola_tf.export import metadata as export_metadata
from cola_tf import hear_eval
from cola_tf.hear import harness as hear_harness
from cola_tf.hear import tasks as hear_tasks
from cola_tf.runtime import workdir_lock
from conftest import REPO, make_speech_commands_tree, subprocess_env

pytestmark = pytest.mark.slow


def _run(args, timeout=900):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
  return proc.stdout


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
  """The shared 6-step tiny.gin run's export and a random-init export of that run."""
  model_dir, export_dir = tiny_run
  random_init = str(tmp_path_factory.mktemp("hear_eval") / "random_init")
  _run(["cola_tf.export", "--model_dir", model_dir, "--random_init_seed", "3",
        "--output", random_init])
  return export_dir, random_init


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("tasks"))
  hear_task_writer.scene_task(root)       # 48 kHz only
  hear_task_writer.kfold_task(root)
  hear_task_writer.event_task(root)
  # A Speech Commands task as prepare_speech_commands writes it (12 classes), its probe grid
  # passed through to heareval's hyperparameters.
  src = str(tmp_path_factory.mktemp("speech_commands_v0.02"))
  make_speech_commands_tree(src, num_words=8, num_speakers=10)
  hear_tasks.write_speech_commands_task(src, root, 12,
                                        probe_grid={"max_epochs": [4], "batch_size": [32]})
  return root


def _md5(path):
  with open(path, "rb") as f:
    return hashlib.md5(f.read()).hexdigest()


def _scores(stdout):
  return {l.split(": ", 1)[0].split("] ", 1)[1]: l.split(": ", 1)[1]
          for l in stdout.splitlines()
          if l.startswith("[hear_eval] ") and ": " in l and any(
              k in l for k in ("top1_acc", "event_onset"))}


def test_every_task_type_and_two_models_in_one_work_folder(exports, tasks, tmp_path):
  trained, random_init = exports
  work = str(tmp_path / "work")
  out = _run(["cola_tf.hear_eval", "--model", trained, "--tasks", tasks, "--work", work,
              "--grid-points", "1"])
  assert "hear-validator: done in" in out and "heareval grid default, 1 grid point(s)" in out
  assert len(out.splitlines()) < 40, out  # heareval's own output is in the logs
  trained_id = export_metadata.identity(export_metadata.read(trained))
  with open(os.path.join(work, "logs", trained_id, "validator.log")) as f:
    assert "Looks good!" in f.read()
  with open(os.path.join(work, "logs", trained_id, "predictions.log")) as f:
    assert "Grid point 1 of 1" in f.read()
  lines = _scores(out)
  assert set(lines) == {"tones_scene-48k", "tones_kfold", "beeps_event",
                        "speech_commands-v0.0.2-full"}, out[-3000:]
  assert lines["speech_commands-v0.0.2-full"].startswith("top1_acc 0.")
  with open(os.path.join(work, "embeddings", trained_id, "hear_module",
                         "speech_commands-v0.0.2-full", "test.predicted-scores.json")) as f:
    scores = json.load(f)
  assert 0.0 <= scores["test"]["test_top1_acc"] <= 1.0
  assert scores["hparams"]["hidden_layers"] == 0  # a linear probe
  assert scores["hparams"]["max_epochs"] == 4 and scores["hparams"]["batch_size"] == 32
  assert lines["beeps_event"].startswith("event_onset_200ms_fms ")
  assert "segment_1s_er" in lines["beeps_event"]
  assert lines["tones_kfold"].startswith("top1_acc ") and "over 3 folds" in lines["tones_kfold"]
  assert "(mAP " in lines["tones_kfold"]
  assert "resampling 24 clips from 48000 Hz to 16000 Hz" in out
  random_id = export_metadata.identity(export_metadata.read(random_init))
  assert trained_id != random_id and "random-init" in random_id

  # The second model in the fast mode (heareval's --model-options): its own folders.
  fast = ["--model-options", '{"fast": true}']
  _stopped_mid_embeddings(random_init, tasks, work, fast)
  out2 = _run(["cola_tf.hear_eval", "--model", random_init, "--tasks", tasks, "--work", work,
               "--grid-points", "1", *fast])
  assert "resampling" not in out2  # the 48 kHz task was resampled once, for both models
  summaries = {}
  for model_id, scores in ((trained_id, "scores.json"), (random_id, "scores-fast=true.json")):
    with open(os.path.join(work, "embeddings", model_id, scores)) as f:
      summaries[model_id] = json.load(f)
    assert summaries[model_id]["model_id"] == model_id
    for task in ("tones_scene-48k", "tones_kfold", "beeps_event"):
      value = summaries[model_id]["tasks"][task]["value"]
      assert math.isfinite(value) and 0.0 <= value <= 1.0, (model_id, task, value)
  kfold = summaries[trained_id]["tasks"]["tones_kfold"]
  assert kfold["folds"] == 3 and kfold["std"] is not None
  event = summaries[trained_id]["tasks"]["beeps_event"]
  assert event["primary_score"] == "event_onset_200ms_fms"
  assert event["others"]["segment_1s_er"] is not None
  emb = os.path.join(work, "embeddings", "{}", "{}", "beeps_event", "test.embeddings.npy")
  assert _md5(emb.format(trained_id, "hear_module")) != _md5(
      emb.format(random_id, "hear_module-fast=true"))
  with open(os.path.join(work, "logs", random_id, "embeddings-fast=true.log")) as f:
    assert "hear_module {\"fast\": true}" in f.read()  # heareval's own line

  # The same model again: embeddings and predictions reused, same scores.
  done = os.path.join(work, "embeddings", trained_id, "hear_module", "beeps_event",
                      ".done.embeddings")
  before = os.path.getmtime(done)
  out3 = _run(["cola_tf.hear_eval", "--model", trained, "--tasks", tasks, "--work", work,
               "--grid-points", "1"])
  assert os.path.getmtime(done) == before
  assert "beeps_event: predictions done earlier" in out3
  assert "hear-validator: passed earlier" in out3  # once per model id
  assert "embeddings: every task embedded earlier" in out3  # its runner not started
  assert _scores(out3) == lines


def _stopped_mid_embeddings(model, tasks, work, options):
  """SIGTERM while heareval's embeddings runner works: hear_eval exits 143 with one line and
  no process of the harness is left."""
  proc = subprocess.Popen(
      [sys.executable, "-m", "cola_tf.hear_eval", "--model", model, "--tasks", tasks,
       "--work", work, "--grid-points", "1", *options], cwd=REPO, env=subprocess_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if "embeddings: running" in line:
      break
  time.sleep(3.0)  # the runner is importing its model
  assert _processes_naming(work), "the embeddings runner should be running"
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 128 + signal.SIGTERM, out + err
  assert "stopped by SIGTERM" in err and "Traceback" not in err, err
  assert not _processes_naming(work)
  assert not os.path.exists(os.path.join(work, "cola_tf.lock"))


def _processes_naming(text):
  found = []
  for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
    try:
      with open(cmdline, "rb") as f:
        if text.encode() in f.read():
          found.append(cmdline)
    except OSError:
      pass
  return found


def test_resampling_resumes_and_names_bad_clips(tmp_path):
  root = str(tmp_path / "tasks")
  task = hear_task_writer.scene_task(root, rates=(48000, 16000))
  only48 = str(tmp_path / "only48")
  os.makedirs(only48)
  os.rename(task, os.path.join(only48, "t"))
  os.rename(os.path.join(only48, "t", "16000"), str(tmp_path / "reference16k"))
  view = hear_tasks.task_view(hear_tasks.find_tasks(only48), str(tmp_path / "view"),
                              str(tmp_path / "resampled"))
  made = sorted(glob.glob(os.path.join(view, "t", "16000", "*", "*.wav")))
  assert len(made) == 24
  for path in made[:4]:
    audio, rate = sf.read(path)
    ref, _ = sf.read(path.replace(os.path.join(view, "t", "16000"),
                                  str(tmp_path / "reference16k")))
    assert rate == 16000 and audio.shape == ref.shape
    assert np.abs(audio - ref)[100:-100].max() < 0.01  # the same tone, resampled
  # Interrupted run: one clip missing, no completion marker -> only that clip is redone.
  resampled = str(tmp_path / "resampled" / "t")
  os.remove(os.path.join(resampled, hear_tasks.COMPLETE))
  os.remove(made[0].replace(os.path.join(view, "t"), resampled))
  with open(os.path.join(only48, "t", "48000", "test", "broken.wav"), "w") as f:
    f.write("not audio")
  with pytest.raises(ValueError, match=r"1 clip\(s\) could not be resampled.*broken\.wav"):
    hear_tasks.resample_task(os.path.join(only48, "t"), resampled)
  assert os.path.exists(made[0].replace(os.path.join(view, "t"), resampled))
  assert not os.path.exists(os.path.join(resampled, hear_tasks.COMPLETE))


def test_hear_eval_errors(tmp_path, exports, tasks):
  proc = subprocess.run([sys.executable, "-m", "cola_tf.hear_eval", "--model", str(tmp_path),
                         "--tasks", str(tmp_path)], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "is not a cola_tf export" in proc.stderr
  proc = subprocess.run([sys.executable, "-m", "cola_tf.hear_eval", "--model", exports[0],
                         "--tasks", str(tmp_path)], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "holds no HEAR task" in proc.stderr
  work = tmp_path / "busy"
  work.mkdir()
  (work / workdir_lock.LOCK_FILE).write_text(json.dumps({**workdir_lock.identity(),
                                                          "heartbeat": time.time()}))
  proc = subprocess.run([sys.executable, "-m", "cola_tf.hear_eval", "--model", exports[0],
                         "--tasks", tasks, "--work", str(work)], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  assert f"work {work} is in use by another hear_eval (pid {os.getpid()}" in proc.stderr
  proc = subprocess.run([sys.executable, "-m", "cola_tf.hear_eval", "--model", exports[0],
                         "--tasks", tasks, "--model-options", '{"fast": 1}'], cwd=REPO,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "fast must be true or false" in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  for options in ("fast", "[1]"):
    with pytest.raises(ValueError, match="--model-options must be a JSON dict"):
      hear_eval._json_dict(options)
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['speed'\]"):
    hear_harness.evaluate(exports[0], tasks, str(tmp_path / "w"), model_options={"speed": 2})


def test_embeddings_runner_is_shown_no_gpu_when_tensorflow_has_none():
  """heareval's embeddings runner raises 'GPUs not available in tensorflow, but found by
  pytorch' on a CUDA torch beside a CPU-only TensorFlow: its torch then sees no GPU."""
  env = {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}
  assert hear_harness.embeddings_env(env, [])["CUDA_VISIBLE_DEVICES"] == ""
  assert hear_harness.embeddings_env(env, ["/physical_device:GPU:0"]) is env
  assert env["CUDA_VISIBLE_DEVICES"] == "0"  # the predictions' environment keeps the GPU


TF_START_UP = ("oneDNN", "cpu_feature_guard", "cuda drivers", "cuInit", "tensorflow/core")


def _cli_without_tensorflow(argv, env):
  """Runs hear_eval's command line in a fresh process; returns (exit code, output, whether
  TensorFlow was imported)."""
  code = ("import sys, runpy; sys.argv = ['hear_eval'] + sys.argv[1:]\n"
          "try:\n  runpy.run_module('cola_tf.hear_eval', run_name='__main__')\n"
          "except SystemExit as e:\n  code = e.code\n"
          "print('TENSORFLOW', 'tensorflow' in sys.modules)\nsys.exit(code)\n")
  proc = subprocess.run([sys.executable, "-c", code] + argv, cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  return proc.returncode, proc.stdout + proc.stderr, "TENSORFLOW True" in proc.stdout


def test_help_and_a_busy_work_folder_answer_before_tensorflow_starts(tmp_path):
  """--help, and a second hear_eval on a busy --work, answer without starting TensorFlow (it
  took 24 s on a loaded machine before the refusal) and print none of its start-up lines."""
  env = {k: v for k, v in subprocess_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  code, out, tensorflow = _cli_without_tensorflow(["--help"], env)
  assert code == 0 and "--work" in out and not tensorflow, out
  work = tmp_path / "work"
  work.mkdir()
  owner = {**workdir_lock.identity(), "heartbeat": time.time()}  # this (live) test process
  (work / workdir_lock.LOCK_FILE).write_text(json.dumps(owner))
  code, out, tensorflow = _cli_without_tensorflow(
      ["--model", str(tmp_path / "m"), "--tasks", str(tmp_path / "t"), "--work", str(work)], env)
  assert code == 2 and "is in use by another hear_eval" in out and not tensorflow, out
  assert not [line for line in out.splitlines() if any(s in line for s in TF_START_UP)], out


def test_embedding_eta_is_timed_from_the_runner_s_first_clip(tmp_path):
  """100 clips; the runner starts up for 30 s, then writes 10 clips a second: 5 s after its
  first clip, 49 left, the ETA is 4 s (timed from the launch, 51 clips in 35 s: 34 s)."""
  view, out = tmp_path / "view", tmp_path / "emb"
  (view / "t" / "16000" / "test").mkdir(parents=True)
  for i in range(100):
    (view / "t" / "16000" / "test" / f"{i}.wav").write_bytes(b"")
  (out / "t" / "test").mkdir(parents=True)
  now = [0.0]
  progress = hear_harness.EmbeddingProgress(str(view), ["t"], str(out), clock=lambda: now[0])

  def written(n):
    for i in range(n):
      (out / "t" / "test" / f"{i}.embedding.npy").touch()

  now[0] = 30.0
  assert progress() == "0/100 clips"
  written(1)
  now[0] = 30.1
  assert progress() == "1/100 clips"  # the first clip: the clock starts here
  written(51)
  now[0] = 35.1
  assert progress() == "51/100 clips, ETA 0:00:04"  # 50 clips in 5 s: 49 left
