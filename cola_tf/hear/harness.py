r"""Probes through the standard HEAR harness: validator, embeddings, predictions, scores
(the command line is `python -m cola_tf.hear_eval`).

Runs, as separate processes (what a researcher would type):
  hear-validator hear_module --model EXPORT_DIR
  python -m heareval.embeddings.runner hear_module --model EXPORT_DIR
      --tasks-dir WORK/tasks --embeddings-dir WORK/embeddings/MODEL_ID [--model-options JSON]
  python -m heareval.predictions.runner WORK/embeddings/MODEL_ID/hear_module/TASK ...
and prints each task's primary score (the first of its task_metadata.json `evaluation`
list: top1_acc, event_onset_200ms_fms, ...; mean +- std over folds for k-fold tasks) with
the others, and writes them to WORK/embeddings/MODEL_ID/scores.json. With model options
(`--model-options '{"fast": true}'`) heareval's folder is
`hear_module-fast=true` and the scores `scores-fast=true.json`.

* MODEL_ID (e.g. `efficientnet_b0-step20000-3f9a0c2d1b`) comes from the export's
  cola_metadata.json (its weights' digest): a second model evaluated with the same --work
  gets its own embeddings and scores; the same model again reuses its embeddings, and its
  predictions when the grid settings match.
* Tasks without 16 kHz audio (the public HEAR archives ship 48 kHz) are resampled once into
  WORK/resampled/ (resumable, with progress); WORK/tasks links every task.
* Grid: heareval's `default` grid and 8 grid points (heareval's defaults) unless told
  otherwise. It trains to convergence (up to 500 epochs, early stopping with patience 20);
  `faster` stops after 10 epochs and scores event tasks far below their converged value.
  A task's task_metadata.json `evaluation_params.task_specific_param_grid` overrides it
  (`cola_tf.prepare_speech_commands` writes `hidden_layers: [0]` there: a linear probe).
The harness is the `[hear]` extra plus heareval/hearvalidator (see docs/hear.md).
"""
import glob
import json
import os
import re
import sys
import time

import tensorflow as tf
from slugify import slugify

import hear_module
from cola_tf.export import metadata as export_metadata
from cola_tf import files
from cola_tf.hear import process as hear_process
from cola_tf.hear import tasks as hear_tasks
from cola_tf import logs
from cola_tf.runtime import workdir_lock

PREDICTION_SETTINGS = "cola_tf_prediction_settings.json"
MODULE = "hear_module"
# heareval's task logger: "predict - TASK - time - msecs - Grid point 2 of 8: {...}"
PREDICTION_STEP = re.compile(r"^predict - (.+?) - .* - ((?:Grid point|Training split) \d+ of \d+)")


def _harness_env():
  env = dict(os.environ)
  env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # lightning checkpoints hold more than weights
  return env


def embeddings_env(env, tensorflow_gpus):
  """heareval's embeddings runner refuses to start when torch sees a GPU and TensorFlow does
  not (a CPU-only TensorFlow beside a CUDA torch): then its torch is shown no GPU (the
  embedding is TensorFlow's work on the CPU either way); predictions keep the GPU."""
  if tensorflow_gpus:
    return env
  if os.path.exists("/dev/nvidiactl") and env.get("CUDA_VISIBLE_DEVICES") != "":
    hear_tasks.log("TensorFlow sees no GPU: embeddings on the CPU (pip install "
                   "'tensorflow[and-cuda]' for GPU embeddings); heareval's predictions on the GPU")
  return {**env, "CUDA_VISIBLE_DEVICES": ""}


def options_suffix(model_options):
  """What heareval's embeddings runner appends to the module's folder name for these
  --model-options ('-KEY=VALUE-...', in the dict's order; '' for none). hear_eval names its
  logs and scores file with it too."""
  return "".join(f"-{slugify(k)}={slugify(str(v))}" for k, v in model_options.items())


def _forget_stale_predictions(task_dir, settings):
  """heareval skips a task with prediction-done.json: keep that only for the same settings."""
  path = os.path.join(task_dir, PREDICTION_SETTINGS)
  done = os.path.join(task_dir, "prediction-done.json")
  scores = os.path.join(task_dir, "test.predicted-scores.json")
  previous = None
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
  if previous == settings and os.path.exists(done) and os.path.exists(scores):
    hear_tasks.log(f"{os.path.basename(task_dir)}: predictions done earlier with {settings}")
    return
  for stale in (done, scores):
    if os.path.exists(stale):
      os.remove(stale)
  files.atomic_write(path, json.dumps(settings))


class EmbeddingProgress:
  """`clips done / total, ETA` of heareval's embeddings runner, from the per-clip files it
  writes (tasks finished earlier count as done). The rate is timed from the first clip this
  run wrote: the runner's 20-40 s start-up made the first ETA ~3x too long."""

  def __init__(self, view, task_names, embeddings, clock=time.time):
    self.total = sum(len(glob.glob(os.path.join(view, name, "16000", "*", "*.wav")))
                     for name in task_names)
    self.pattern = os.path.join(embeddings, "*", "*", "*.embedding.npy")
    self.first, self.clock, self.mark = len(glob.glob(self.pattern)), clock, None

  def __call__(self):
    done, now = min(len(glob.glob(self.pattern)), self.total), self.clock()
    if self.mark is None and done > self.first:
      self.mark = (now, done)  # the runner is past its start-up
    eta = ""
    if self.mark is not None and done > self.mark[1] and now > self.mark[0]:
      rate = (done - self.mark[1]) / (now - self.mark[0])
      eta = f", ETA {logs.format_seconds((self.total - done) / rate)}"
    return f"{done}/{self.total} clips{eta}"


class PredictionProgress:
  """`task k of n (NAME): grid point i of m` from heareval's predictions log."""

  def __init__(self, log_path, task_dirs):
    self.log_path, self.task_dirs = log_path, task_dirs

  def __call__(self):
    done = sum(os.path.exists(os.path.join(t, "prediction-done.json")) for t in self.task_dirs)
    where = ""
    for line in reversed(hear_process.tail(self.log_path, lines=400)):
      match = PREDICTION_STEP.match(line)
      if match:
        where = f" ({match.group(1)}: {match.group(2).lower()})"
        break
    return f"{done} of {len(self.task_dirs)} tasks done{where}"


def _validate_once(model, env, log_dir, work):
  """hear-validator on the export, once per model id (its weights' digest is in the id): a
  pass is kept as LOG_DIR/validator.passed, and a rerun skips it (remove that file to run
  the validator again)."""
  passed = os.path.join(log_dir, "validator.passed")
  log_path = os.path.join(log_dir, "validator.log")
  if os.path.exists(passed):
    hear_tasks.log(f"hear-validator: passed earlier ({log_path})")
    return
  hear_process.run_logged([sys.executable, "-c", "from hearvalidator.validate import main; "
                           "main()", MODULE, "--model", model], env, log_path,
                          "hear-validator", cwd=work)
  files.atomic_write(passed, model + "\n")


def _harness(model, view, out, work, task, task_names, grid, grid_points, model_options):
  """hear-validator, heareval's embeddings and predictions runners, each logged to
  WORK/logs/MODEL_ID/STAGE.log with progress lines; returns the embedded task folders."""
  env, py = _harness_env(), sys.executable
  suffix = options_suffix(model_options)
  folder = MODULE + suffix
  log_dir = os.path.join(work, "logs", os.path.basename(out))
  _validate_once(model, env, log_dir, work)
  embedded = [os.path.join(out, folder, name) for name in task_names]
  if all(os.path.exists(os.path.join(t, ".done.embeddings")) for t in embedded):
    # heareval's runner would skip every task too, after 20-40 s of starting up.
    hear_tasks.log(f"embeddings: every task embedded earlier ({os.path.join(out, folder)})")
  else:
    hear_process.run_logged(
        [py, "-m", "heareval.embeddings.runner", MODULE, "--model", model, "--tasks-dir",
         view, "--embeddings-dir", out, "--task", task, "--model-options",
         json.dumps(model_options)],
        embeddings_env(env, tf.config.list_physical_devices("GPU")),
        os.path.join(log_dir, f"embeddings{suffix}.log"),
        "embeddings", EmbeddingProgress(view, task_names, os.path.join(out, folder)), cwd=work)
  for task_dir in embedded:
    _forget_stale_predictions(task_dir, {"grid": grid, "grid_points": grid_points})
  log_path = os.path.join(log_dir, f"predictions{suffix}.log")
  hear_tasks.log(f"predictions: heareval grid {grid}, {grid_points} grid point(s) per task")
  hear_process.run_logged(
      [py, "-m", "heareval.predictions.runner", *embedded, "--grid", grid, "--grid-points",
       str(grid_points)], env, log_path, "predictions", PredictionProgress(log_path, embedded),
      cwd=work)
  return embedded


def evaluate(model, tasks, work, task="all", grid="default", grid_points=8, model_options=None):
  """Returns (model id, {task name: heareval's test scores dict}, {task: metadata}).
  `model_options`: hear_module.load_model's keywords (heareval's --model-options); each
  set of them has its own embeddings. One hear_eval per --work at a time (a lock, as the
  trainer's on its model_dir)."""
  metadata = export_metadata.read(model, who="hear_eval --model")
  model_options = dict(model_options or {})
  hear_module.check_model_options(model_options, metadata, who="hear_eval --model-options")
  model_id = export_metadata.identity(metadata)
  task_dirs = hear_tasks.find_tasks(tasks, task)
  os.makedirs(work, exist_ok=True)
  with workdir_lock.ModelDirLock(work, hear_tasks.log, wait=False, user=workdir_lock.HEAR_EVAL):
    view = hear_tasks.task_view(task_dirs, os.path.join(work, "tasks"),
                                os.path.join(work, "resampled"))
    out = os.path.join(work, "embeddings", model_id)
    os.makedirs(out, exist_ok=True)
    files.atomic_write(os.path.join(out, "model.json"),
                       json.dumps({"export": model, "metadata": metadata}, indent=1))
    hear_tasks.log(f"model {model_id} ({model}) -> {out}")
    embedded = _harness(model, view, out, work, task,
                        [os.path.basename(t) for t in task_dirs], grid, grid_points,
                        model_options)
  results, metas = {}, {}
  for task_dir in embedded:
    name = os.path.basename(task_dir)
    with open(os.path.join(task_dir, "test.predicted-scores.json")) as f:
      results[name] = json.load(f)
    metas[name] = hear_tasks.read_metadata(task_dir)
  return model_id, results, metas


def summary(model_id, results, metas):
  """{task: {primary score name, value, std, folds, others}} for scores.json."""
  table = {}
  for task, scores in results.items():
    name, value, std, folds = hear_tasks.primary_score(scores, metas[task])
    table[task] = {"primary_score": name, "value": value, "std": std, "folds": folds,
                   "others": hear_tasks.secondary_scores(scores, metas[task])}
  return {"model_id": model_id, "tasks": table}
