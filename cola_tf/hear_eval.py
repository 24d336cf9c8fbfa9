r"""Linear probe through the standard HEAR harness: validator, embeddings, predictions.

  python -m cola_tf.hear_eval --model EXPORT_DIR --tasks TASKS_DIR [--work DIR]
      [--task NAME] [--grid faster|fast|default] [--grid-points N]

Runs, in order and as separate processes (exactly what a researcher would type):
  hear-validator hear_module --model EXPORT_DIR
  python -m heareval.embeddings.runner hear_module --model EXPORT_DIR --tasks-dir TASKS_DIR
      --embeddings-dir WORK/embeddings
  python -m heareval.predictions.runner WORK/embeddings/hear_module/TASK --grid GRID ...
then prints each task's test scores from heareval's test.predicted-scores.json. The probe
(0 hidden layers for a linear probe) comes from the task's task_metadata.json
(evaluation_params.task_specific_param_grid; see cola_tf.prepare_speech_commands).
The harness needs requirements-hear.txt installed (scripts/setup.sh does it).
"""
import argparse
import json
import os
import subprocess
import sys


def _run(args, env=None):
  print("[hear_eval] $ " + " ".join(args), flush=True)
  proc = subprocess.run(args, env=env)
  if proc.returncode:
    raise SystemExit(f"[hear_eval] failed (exit {proc.returncode}): {' '.join(args)}")


def evaluate(model, tasks, work, task="all", grid="faster", grid_points=1):
  """Returns {task name: test scores dict}."""
  if not os.path.isfile(os.path.join(model, "cola_metadata.json")):
    raise SystemExit(f"[hear_eval] --model {model!r} is not a cola_tf export")
  if not os.path.isdir(tasks):
    raise SystemExit(f"[hear_eval] --tasks {tasks!r} is not a directory")
  env = dict(os.environ)
  env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # lightning checkpoints hold more than weights
  py = sys.executable
  _run([py, "-c", "from hearvalidator.validate import main; main()", "hear_module",
        "--model", model], env)
  embeddings = os.path.join(work, "embeddings")
  _run([py, "-m", "heareval.embeddings.runner", "hear_module", "--model", model,
        "--tasks-dir", tasks, "--embeddings-dir", embeddings, "--task", task], env)
  module_dir = os.path.join(embeddings, "hear_module")
  task_dirs = sorted(os.path.join(module_dir, t) for t in os.listdir(module_dir)
                     if os.path.isdir(os.path.join(module_dir, t)))
  for task_dir in task_dirs:
    done = os.path.join(task_dir, "test.predicted-scores.json")
    if os.path.exists(done):
      os.remove(done)
  _run([py, "-m", "heareval.predictions.runner", *task_dirs, "--grid", grid,
        "--grid-points", str(grid_points)], env)
  results = {}
  for task_dir in task_dirs:
    with open(os.path.join(task_dir, "test.predicted-scores.json")) as f:
      results[os.path.basename(task_dir)] = json.load(f)
  return results


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", required=True, help="a cola_tf export (SavedModel folder)")
  p.add_argument("--tasks", required=True, help="HEAR tasks directory")
  p.add_argument("--work", default="hear_eval", help="where embeddings and logs go")
  p.add_argument("--task", default="all", help="one task folder name, or all")
  p.add_argument("--grid", default="faster", choices=["faster", "fast", "default"])
  p.add_argument("--grid-points", type=int, default=1)
  a = p.parse_args(argv)
  results = evaluate(os.path.abspath(a.model), os.path.abspath(a.tasks),
                     os.path.abspath(a.work), a.task, a.grid, a.grid_points)
  for task, scores in results.items():
    score = scores.get("test", {}).get("test_top1_acc", scores.get("test_score"))
    print(f"[hear_eval] {task}: test top-1 accuracy {score} (heareval scores: "
          f"{json.dumps({k: v for k, v in scores.items() if k != 'hparams'})})", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
