"""experiments/generated_speech/run.py end to end at toy scale: data, pretraining arms, random-init
controls, probes on both tasks, ablations, the results table and plots; a rerun reuses
every stage."""
import csv
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env

pytestmark = [
    pytest.mark.slow,  # end-to-end runs in subprocesses: `-m "not slow"` skips them
    pytest.mark.skipif(not shutil.which("espeak-ng"),
                       reason="the experiment's corpus needs espeak-ng (setup.sh)")]

# One arm in the table (2 seeds; its curve run, as long, is its seed 0), the other in the
# curves, one ablation: each stage once, at the least cost (the suite's time; the arms'
# files all parse in test_gin_configs).
TOY = ["--speakers", "8", "--words", "4", "--takes", "3", "--unlabeled", "12", "--steps", "6",
       "--seeds", "2", "--probe_epochs", "5", "--ablations", "7", "--arms", "cola recipe",
       "--curves", "--curve_arms", "cola recipe,cola tuned", "--curve_steps", "6",
       "--eval_every", "4",
       "--heareval_epochs", "4"]


def test_toy_experiment_writes_results_and_resumes(tmp_path):
  out = str(tmp_path / "exp")
  cmd = [sys.executable, os.path.join(REPO, "experiments", "generated_speech", "run.py"),
         "--out", out, *TOY]
  first = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                         timeout=900)
  assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
  for name in ("results.md", "results.csv", "training_curves.png", "probe_accuracy.png",
               "learning_curves.png", "learning_curves.csv"):
    assert os.path.getsize(os.path.join(out, name)) > 100, name
  with open(os.path.join(out, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  groups = {(r["encoder"], r["task"]) for r in rows}
  for group in ("log-mel mean/std", "random init (cola recipe)", "cola recipe"):
    assert {(group, "keyword"), (group, "speaker")} <= groups
  seeds = [r for r in rows if r["encoder"] == "random init (cola recipe)"
           and r["task"] == "keyword" and r["probe"] == "linear_probe"]
  assert sorted(int(r["seed"]) for r in seeds) == [0, 1]
  assert all(0.0 <= float(r["test_top1"]) <= 1.0 for r in rows)
  hear = {r["encoder"] for r in rows if r["probe"] == "heareval"}  # through cola_tf.hear_eval
  assert hear == {"random init (cola recipe)", "cola recipe"}
  with open(os.path.join(out, "results.md")) as f:
    table = f.read()
  assert "| cola recipe |" in table and "keyword (4 words)" in table
  assert "| 2 replicas, global negatives |" in table
  assert "| cosine similarity (T = 0.1) |" not in table  # --ablations 7 only
  run = os.path.join(out, "runs", "ablation_2_replicas_global_negatives")
  with open(os.path.join(run, "operative_config.gin")) as f:
    config = f.read()
  assert "train.cpu_replicas = 2" in config and "train.negatives = 'global'" in config
  assert os.path.isdir(os.path.join(out, "runs", "cola_recipe_curve"))
  assert not os.path.exists(os.path.join(out, "runs", "cola_recipe_seed0"))  # the curve run
  with open(os.path.join(out, "runs", "cola_tuned_curve", "operative_config.gin")) as f:
    config = f.read()
  assert "ColaModel.similarity = 'cosine'" in config and "build_encoder.pooling = 'mean_std'" in config
  assert "LogMelFrontend.normalization = 'per_window'" in config
  # Learning curves: online evaluation at 0, 4 and 6 steps, on both tasks, both arms.
  with open(os.path.join(out, "learning_curves.csv")) as f:
    curve = list(csv.DictReader(f))
  assert {(r["arm"], r["step"]) for r in curve} == {
      (arm, s) for arm in ("cola recipe", "cola tuned") for s in ("0", "4", "6")}
  assert {r["task"] for r in curve} == {"keyword", "speaker"}
  # Every stage is on disk: a rerun trains nothing and reports the same numbers.
  again = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                         timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "done earlier" in again.stdout and "| loss" not in again.stdout
  with open(os.path.join(out, "results.csv")) as f:
    assert list(csv.DictReader(f)) == rows


def test_prior_curves_are_the_arms_not_run_again(tmp_path):
  sys.path.insert(0, os.path.join(REPO, "experiments", "generated_speech"))
  import curves  # pylint: disable=import-outside-toplevel
  path = tmp_path / "learning_curves.csv"
  path.write_text("arm,step,task,metric,value\na,0,keyword,knn_top1,0.1\n"
                  "b,250,speaker,linear_top1,0.5\n")
  assert curves.read_prior(str(path), ["a"]) == [
      ("b (earlier run)", 250, "speaker", "linear_top1", 0.5)]
  assert curves.read_prior(None, ["a"]) == []
  path.write_text("step,value\n0,1\n")
  with pytest.raises(SystemExit, match=f"{path}: not a learning_curves.csv"):
    curves.read_prior(str(path), [])


def test_verdict_names_the_spread_only_with_seeds_to_measure_it():
  """One seed above its control was reported 'beyond the seed spread'; a spread needs seeds."""
  sys.path.insert(0, os.path.join(REPO, "experiments", "generated_speech"))
  import run  # pylint: disable=import-outside-toplevel
  stats = run.summarise([("a", 0, "keyword", 0.44), ("r", 0, "keyword", 0.20),
                         ("r", 1, "keyword", 0.22), ("m", 0, "keyword", 0.44),
                         ("b", 0, "keyword", 0.43), ("b", 1, "keyword", 0.45),
                         ("b", 2, "keyword", 0.47), ("c", 0, "keyword", 0.10),
                         ("c", 1, "keyword", 0.12)])
  assert run.standing(stats, "a", "r", "keyword") == (
      "above (one seed: the seed spread is unknown)")
  assert run.standing(stats, "b", "r", "keyword").startswith("**above, beyond the seed spread**")
  assert run.standing(stats, "b", "m", "keyword") == "above, within the seed spread"
  assert run.standing(stats, "c", "r", "keyword").startswith("**below, beyond")


def test_sigterm_to_the_experiment_reaches_its_child_and_stops_both(tmp_path):
  """A `kill PID` of run.py stopped it but left its trainer running (the child never got the
  signal): now the child gets it, and run.py exits 128 + 15 once the child has ended."""
  import signal
  import time
  marker = tmp_path / "child_got_sigterm"
  child = (f"import signal, sys, time\n"
           f"def stop(s, f):\n  open({str(marker)!r}, 'w').close(); sys.exit(143)\n"
           f"signal.signal(signal.SIGTERM, stop)\nprint('child ready', flush=True)\n"
           f"time.sleep(120)\n")
  driver = (f"import sys; sys.path.insert(0, {os.path.join(REPO, 'experiments', 'generated_speech')!r})\n"
            f"import run\nrun.run_logged([sys.executable, '-c', {child!r}], "
            f"{str(tmp_path / 'logs' / 'child.log')!r}, echo='ready')\n")
  proc = subprocess.Popen([sys.executable, "-c", driver], cwd=REPO, env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    for line in proc.stdout:
      if "child ready" in line:
        break
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143, rest
  assert marker.exists() and "stopped on SIGTERM (the child exited 143)" in rest
  assert time.time() - started < 30
