r"""Probes an export through the standard HEAR harness (see cola_tf.hear.harness).

  python -m cola_tf.hear_eval --model EXPORT_DIR --tasks TASKS_DIR [--work DIR]
      [--task NAME] [--grid default|fast|faster] [--grid-points N]
      [--model-options '{"fast": true}']
"""
import argparse
import json
import os
import sys

# Nothing here starts TensorFlow: --help and a refused busy --work answer in a second; the
# harness (TensorFlow, heareval's side) is imported once the run goes ahead.
from cola_tf import logs
from cola_tf.runtime import preemption
from cola_tf.runtime import workdir_lock


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--model", required=True, help="a cola_tf export (SavedModel folder)")
  p.add_argument("--tasks", required=True, help="folder of HEAR tasks (hear-preprocess layout)")
  p.add_argument("--work", default="hear_eval", help="where task views, embeddings and "
                 "scores go (one subfolder per model)")
  p.add_argument("--task", default="all", help="one task folder name, or all")
  p.add_argument("--grid", default="default", choices=["default", "fast", "faster"],
                 help="heareval's hyperparameter grid (default: default, which converges)")
  p.add_argument("--grid-points", type=int, default=8,
                 help="grid points sampled by heareval's model selection (default 8)")
  p.add_argument("--model-options", default="{}",
                 help="hear_module.load_model's options as a JSON dict (heareval's "
                      "--model-options), e.g. '{\"fast\": true}'")
  a = p.parse_args(argv)
  work = os.path.abspath(a.work)
  try:
    workdir_lock.ModelDirLock(work, wait=False, user=workdir_lock.HEAR_EVAL).check_free()
  except workdir_lock.ModelDirBusyError as e:
    logs.log(f"ERROR: {e}", component="hear_eval", error=True)
    return 2
  from cola_tf import files  # pylint: disable=import-outside-toplevel
  from cola_tf.hear import tasks as hear_tasks  # pylint: disable=import-outside-toplevel
  from cola_tf.hear.harness import evaluate, options_suffix, summary  # pylint: disable=import-outside-toplevel
  received = preemption.interrupt_on_signals()
  try:
    options = _json_dict(a.model_options)
    model_id, results, metas = evaluate(os.path.abspath(a.model), os.path.abspath(a.tasks),
                                        work, a.task, a.grid, a.grid_points, options)
  except (ValueError, workdir_lock.ModelDirBusyError) as e:
    hear_tasks.log(f"ERROR: {e}", error=True)
    return 2
  except KeyboardInterrupt:
    signum = received()
    hear_tasks.log(f"stopped by {signum.name}, the harness's processes with "
                   "it; the same command continues (finished tasks' embeddings and "
                   "predictions are kept)", error=True)
    return 128 + signum
  for task, scores in results.items():
    hear_tasks.log(hear_tasks.describe(task, scores, metas[task]))
  path = os.path.join(work, "embeddings", model_id, f"scores{options_suffix(options)}.json")
  files.atomic_write(path, json.dumps(summary(model_id, results, metas), indent=1))
  hear_tasks.log(f"scores of {model_id}: {path}")
  return 0


def _json_dict(text):
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"--model-options must be a JSON dict, got {text!r} ({e})") from None
  if not isinstance(value, dict):
    raise ValueError(f"--model-options must be a JSON dict, got {text!r}")
  return value


if __name__ == "__main__":
  sys.exit(main())
