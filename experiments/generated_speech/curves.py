"""Learning curves for the generated-speech experiment (run.py --curves).

Each arm pretrains once (seed 0) for `--curve_steps` steps with the trainer's online
evaluation every `--eval_every` steps on the corpus' keyword and speaker tasks (kNN top-1
and the online linear probe, `cola_tf.probe.online`); the step-0 scores are the arm's random
initialisation. The log-mel mean/std baseline is scored by the same scorers. Writes
OUT/learning_curves.png and OUT/learning_curves.csv (arm, step, task, metric, value).
"""
import csv
import os

import numpy as np

from cola_tf.probe import online as evaluation
from cola_tf.probe import embedders
from cola_tf.probe import eval_sets
from cola_tf.probe.speech_commands import Split

METRICS = ("knn_top1", "linear_top1")
TASKS = ("keyword", "speaker")


def eval_params(data, every):
  """gin bindings that turn on the online evaluation on the corpus' Speech Commands tree."""
  return ["train.evaluation = @OnlineEvaluation()",
          "OnlineEvaluation.eval_set = @SpeechCommandsEvalSet()",
          f"SpeechCommandsEvalSet.root = '{os.path.join(data, 'speech_commands')}'",
          f"OnlineEvaluation.every = {every}"]


def logmel_levels(data):
  """{(task, metric): score} of the log-mel mean/std baseline under the online scorers."""
  ev = evaluation.OnlineEvaluation(
      eval_set=eval_sets.SpeechCommandsEvalSet(os.path.join(data, "speech_commands")))
  ev.tasks = ev.eval_set.tasks()
  ev.paths = sorted({p for t in ev.tasks for s in t.splits.values() for p in s.files})
  split = Split(list(ev.paths), ["x"] * len(ev.paths))
  features, _ = embedders.embed_split(embedders.LogMelStatsEmbedder(), split, {"x": 0},
                                      ev.clip_samples)
  return ev.score(features, np.ones(len(ev.paths), bool))


def read_prior(path, running):
  """Rows (arm, step, task, metric, value) of an earlier learning_curves.csv for the arms not
  in `running`, each arm renamed '<arm> (earlier run)'; [] when path is None."""
  if path is None:
    return []
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames != ["arm", "step", "task", "metric", "value"]:
      raise SystemExit(f"[experiment] {path}: not a learning_curves.csv (columns "
                       f"{reader.fieldnames})")
    return [(f"{r['arm']} (earlier run)", int(r["step"]), r["task"], r["metric"],
             float(r["value"])) for r in reader if r["arm"] not in running]


def write(out, curve_runs, levels, prior_rows=()):
  """curve_runs: [(arm, model_dir)]; levels: logmel_levels(); prior_rows: read_prior().
  Writes the CSV (this run's arms) and the plot (with the prior arms, dashed)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  rows = [(arm, *r) for arm, model_dir in curve_runs for r in evaluation.read_csv(model_dir)]
  with open(os.path.join(out, "learning_curves.csv.tmp"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["arm", "step", "task", "metric", "value"])
    writer.writerows((a, s, t, m, f"{v:.4f}") for a, s, t, m, v in rows)
  os.replace(os.path.join(out, "learning_curves.csv.tmp"),
             os.path.join(out, "learning_curves.csv"))
  fig, axes = plt.subplots(len(TASKS), len(METRICS), figsize=(11, 7), squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  drawn = list(rows) + list(prior_rows)
  arms = [arm for arm, _ in curve_runs] + list(dict.fromkeys(r[0] for r in prior_rows))
  for i, task in enumerate(TASKS):
    for j, metric in enumerate(METRICS):
      ax = axes[i][j]
      for k, arm in enumerate(arms):
        points = sorted((s, v) for a, s, t, m, v in drawn if (a, t, m) == (arm, task, metric))
        if not points:
          continue
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[k % len(colors)],
                label=arm, linestyle="--" if k >= len(curve_runs) else "-")
        ax.axhline(points[0][1], color=colors[k % len(colors)], linestyle=":",
                   linewidth=1)  # random init
      if (task, metric) in levels:
        ax.axhline(levels[(task, metric)], color="black", linestyle="--", label="log-mel mean/std")
      ax.set_title(f"{task}: {metric.replace('_top1', '')} top-1", fontsize=9)
      ax.set_xlabel("pretraining step")
      ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  fig.suptitle("online evaluation (dotted: each arm at random init, step 0)", fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "learning_curves.png"), dpi=100)
  plt.close(fig)
  return rows
