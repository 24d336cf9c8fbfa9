r"""Probes through the standard HEAR harness: validator, embeddings, predictions, scores
(the command line is `python -m cola_tf.hear_eval`).

Runs, as separate processes (what a researcher would type):
  hear-validator hear_module --model EXPORT_DIR
  python -m heareval.embeddings.runner hear_module --model EXPORT_DIR
      --tasks-dir WORK/tasks --embeddings-dir WORK/embeddings/MODEL_ID
  python -m heareval.predictions.runner WORK/embeddings/MODEL_ID/hear_module/TASK ...
and prints each task's primary score (the first of its task_metadata.json `evaluation`
list: top1_acc, event_onset_200ms_fms, ...; mean +- std over folds for k-fold tasks) with
the others, and writes them to WORK/embeddings/MODEL_ID/scores.json.

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
import json
import os
import subprocess
import sys

from cola_tf import export_metadata
from cola_tf import files
from cola_tf import hear_tasks

PREDICTION_SETTINGS = "cola_tf_prediction_settings.json"
MODULE = "hear_module"


def _run(args, env):
  hear_tasks.log("$ " + " ".join(args))
  proc = subprocess.run(args, env=env)
  if proc.returncode:
    raise SystemExit(f"[hear_eval] failed (exit {proc.returncode}): {' '.join(args)}")


def _harness_env():
  env = dict(os.environ)
  env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # lightning checkpoints hold more than weights
  return env


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


def evaluate(model, tasks, work, task="all", grid="default", grid_points=8):
  """Returns (model id, {task name: heareval's test scores dict}, {task: metadata})."""
  metadata = export_metadata.read(model, who="hear_eval --model")
  model_id = export_metadata.identity(metadata)
  task_dirs = hear_tasks.find_tasks(tasks, task)
  view = hear_tasks.task_view(task_dirs, os.path.join(work, "tasks"),
                              os.path.join(work, "resampled"))
  out = os.path.join(work, "embeddings", model_id)
  os.makedirs(out, exist_ok=True)
  files.atomic_write(os.path.join(out, "model.json"),
                     json.dumps({"export": model, "metadata": metadata}, indent=1))
  hear_tasks.log(f"model {model_id} ({model}) -> {out}")
  env, py = _harness_env(), sys.executable
  _run([py, "-c", "from hearvalidator.validate import main; main()", MODULE,
        "--model", model], env)
  _run([py, "-m", "heareval.embeddings.runner", MODULE, "--model", model,
        "--tasks-dir", view, "--embeddings-dir", out, "--task", task], env)
  embedded = [os.path.join(out, MODULE, os.path.basename(t)) for t in task_dirs]
  for task_dir in embedded:
    _forget_stale_predictions(task_dir, {"grid": grid, "grid_points": grid_points})
  _run([py, "-m", "heareval.predictions.runner", *embedded, "--grid", grid,
        "--grid-points", str(grid_points)], env)
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
