r"""Does COLA pretraining help? A small, reproducible experiment on generated speech.

  python experiments/generated_speech/run.py [--out runs/generated_speech] [--steps 300]
      [--seeds 3] [--arms A,B] [--ablations [1,7,..] [--ablation_arm A]] [--curves [--curve_steps 3000]
      [--eval_every 250] [--curve_arms A,B,C]] [--no_heareval] [--heareval_epochs 100]
  (experiments/generated_speech/run.sh runs it after the set-up.)

1. Data: scripts/make_speech_commands_synth.py (espeak-ng speech) writes a Speech Commands
   v0.02-layout corpus (35 words, `--takes` utterances per word and speaker, speaker-
   disjoint splits) and `--unlabeled` multi-second unlabeled clips (phrases, tones, noise).
2. Pretraining (on the unlabeled clips plus the train split's audio without labels;
   `--seeds` pretraining seeds each; every run is exported), the arms (the first and last
   by default):
   `cola recipe` (recipe_arm.gin: tiny.gin's small CNN with the recipe as common.gin
   defines it: bilinear similarity, L2 waveform normalisation, noise on the positive, no
   log-mel normalisation), `cola recipe ConvNeXt-atto` (convnext_arm.gin: the same recipe
   with the seed rows' encoder family at CPU scale), `cola tuned` (tuned_arm.gin: cosine
   similarity, per-window log-mel standardisation and statistics pooling on the small CNN),
   `cola tuned ConvNeXt-atto` (the same three on ConvNeXt-atto) and `cola ConvNeXt-atto CPU`
   (gin/variants/convnext_cpu.gin on ConvNeXt-atto: those three, layer scale 0.1, 4x rate).
3. Controls: each arm's encoder at random initialisation (`--seeds` seeds, via
   `cola_tf.export --random_init_seed`; its frontend is the arm's) and the log-mel mean/std
   baseline.
4. Probes (cola_tf.linear_probe: each 1 s clip whole through the frozen encoder, one Dense
   layer, best epoch on valid, test top-1; the optimiser is sized for this small corpus:
   standardised features, batch 64, 100 epochs, AdamW 3e-3 cosine, weight decay 1e-4) on
   two tasks: keyword (35 words, speaker-disjoint) and speaker identification (same
   speakers, disjoint clips). For keywords also heareval's linear probe (hear-validator ->
   embeddings -> predictions runners) on the first seed of each arm and of random init.
5. With --ablations (about 2.5 minutes per variant more on the small CNN), on
   `--ablation_arm` (default `cola recipe`; one seed each): one gin file per variant in
   ablations/ (its `# ablation:` line names it; `# encoder: convnext` on the second line
   marks ConvNeXt-only ones, which `all` leaves out on other arms), parsed after the arm's.
6. With --curves, each arm also pretrains once for --curve_steps with the trainer's online
   evaluation every --eval_every steps on the keyword and speaker tasks (curves.py); when
   --curve_steps equals --steps, an arm's curve run is also its seed-0 run (the same
   config, evaluation on). `--prior_curves CSV` also draws the arms of an earlier run's
   learning_curves.csv that are not run now (labelled as earlier).
   OUT/learning_curves.png and .csv, with the log-mel baseline and each arm's random init
   drawn as levels.

Writes OUT/results.csv and OUT/results.md (mean, std and every seed), OUT/training_curves.png
(loss and contrastive accuracy over steps) and OUT/probe_accuracy.png. Every stage is kept
on disk and skipped when rerun (an interrupted run continues where it stopped; training runs
resume from their checkpoints). Progress goes to stdout; each child's full log to OUT/logs/.
"""
import argparse
import contextlib
import csv
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from cola_tf import logs
from cola_tf.export import metadata as export_metadata
from cola_tf.probe import embedders
from cola_tf.probe import fit
from cola_tf.probe import speech_commands
from cola_tf.probe import protocol

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import curves  # noqa: E402  (beside this file)
# The espeak-ng corpus generator lives with the project's scripts (tests use it too).
GENERATOR = os.path.join(HERE, "..", "..", "scripts", "make_speech_commands_synth.py")
TASKS = ("keyword", "speaker")
ARMS = {  # name -> gin file; all pretrain on the unlabeled clips + the train split's audio
    "cola recipe": os.path.join(HERE, "recipe_arm.gin"),
    "cola recipe ConvNeXt-atto": os.path.join(HERE, "convnext_arm.gin"),
    "cola tuned": os.path.join(HERE, "tuned_arm.gin"),
    "cola tuned ConvNeXt-atto": os.path.join(HERE, "convnext_tuned_arm.gin"),
    "cola ConvNeXt-atto CPU": os.path.join(HERE, "convnext_cpu_arm.gin"),
}
# ConvNeXt-atto runs ~2x slower than the small CNN and learned nothing useful at the
# recipe's settings in 3000 steps (docs/results.md): named with --arms, not by default.
DEFAULT_ARMS = ("cola recipe", "cola tuned")
ABLATION_ARM = "cola recipe"
LOG_MEL = "log-mel mean/std"  # the baseline's group: mean and std of each log-mel bin
# The probe's optimiser for a corpus of a few thousand clips (the seed's batch 512 x 50
# epochs would be 4 steps an epoch here); the input is the seed's: each 1 s clip whole.
PROBE_SETTINGS = dict(epochs=100, batch_size=64, learning_rate=3e-3, reference_batch=0,
                      warmup_epochs=0, weight_decay=1e-4, standardize=True)
# heareval's own linear probe, given enough steps for a corpus of a few thousand clips (its
# "faster" grid trains 10 epochs at batch 1024 and stopped at epoch 0 here: chance accuracy).
HEAR_PROBE_GRID = {"batch_size": [64], "max_epochs": [100], "patience": [20],
                   "check_val_every_n_epoch": [1], "lr": [1e-3]}
ABLATIONS_DIR = os.path.join(HERE, "ablations")


def ablations(only="all", arm=None):
  """[(name, gin file)] in file-name order; the name is the file's `# ablation:` line.
  `only`: 'all', or comma-separated file-name prefixes (numbers: '1,7'). A file whose second
  line is `# encoder: convnext` sets ConvNeXt options: with 'all' it is left out of an arm
  without ConvNeXt in its name."""
  found = []
  prefixes = None if only == "all" else [f"{p.strip()}_" for p in only.split(",")]
  for path in sorted(glob.glob(os.path.join(ABLATIONS_DIR, "*.gin"))):
    if prefixes and not os.path.basename(path).startswith(tuple(prefixes)):
      continue
    with open(path) as f:
      first, second = f.readline(), f.readline()
    if not first.startswith("# ablation: "):
      raise SystemExit(f"[experiment] {path}: the first line must be '# ablation: NAME'")
    if (second.strip() == "# encoder: convnext" and not prefixes and arm is not None
        and "ConvNeXt" not in arm):
      continue
    found.append((first[len("# ablation: "):].strip(), path))
  return found


def slug(name):
  """A folder name for a run or encoder name."""
  return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def log(message):
  print(f"[experiment] {time.strftime('%H:%M:%S')} {message}", flush=True)


def run_logged(args, log_path, echo=None):
  """Runs a child process, its output appended to log_path; lines containing `echo` are also
  printed (progress). Raises with the log's tail on failure."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
  with open(log_path, "a") as f:
    f.write("$ " + " ".join(args) + "\n")
    f.flush()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    received = []
    with _forwarding_signals(proc, received):
      for line in proc.stdout:
        f.write(line)
        if echo and echo in line:
          print("    " + line.rstrip(), flush=True)
      proc.wait()
  if received:  # the child (a trainer saves its checkpoint) has stopped: so do we
    log(f"stopped on {signal.Signals(received[0]).name} (the child exited {proc.returncode}); "
        "rerun the same command to continue")
    sys.exit(128 + received[0])
  if proc.returncode:
    with open(log_path) as f:
      tail = "".join(f.readlines()[-15:])
    raise RuntimeError(f"failed (exit {proc.returncode}): {' '.join(args)}\n"
                       f"--- last lines of {log_path} ---\n{tail}")


@contextlib.contextmanager
def _forwarding_signals(proc, received):
  """SIGTERM / SIGINT to this process go to the child too (a `kill PID` of the experiment
  would otherwise leave its trainer running), which then ends as it does on a signal."""
  def forward(signum, frame):  # pylint: disable=unused-argument
    received.append(signum)
    if proc.poll() is None:
      proc.send_signal(signum)

  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def make_data(out, speakers, takes, unlabeled, seed, words=35):
  data = os.path.join(out, "data")
  if os.path.isdir(data):
    log(f"data: using {data}")
    return data
  if not shutil.which("espeak-ng"):
    raise SystemExit("[experiment] espeak-ng is not installed (apt-get install -y espeak-ng; "
                     "scripts/setup.sh does it)")
  tmp = data + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  started = time.time()
  log(f"data: generating {speakers} speakers x {words} words x {takes} takes and {unlabeled} "
      "unlabeled clips with espeak-ng ...")
  run_logged([sys.executable, GENERATOR, os.path.join(tmp, "speech_commands"),
              "--speakers", str(speakers), "--words", str(words), "--takes", str(takes),
              "--unlabeled", str(unlabeled), "--seed", str(seed)],
             os.path.join(out, "logs", "data.log"))
  os.replace(tmp, data)
  log(f"data: done in {time.time() - started:.0f} s")
  return data


def write_manifest(data):
  """The pretraining manifest (absolute paths): unlabeled clips + the train split's audio."""
  from cola_tf.data import sources  # pylint: disable=import-outside-toplevel
  unlabeled = sorted(glob.glob(os.path.join(data, "unlabeled", "*.flac")))
  train = sources.SpeechCommandsSource(os.path.join(data, "speech_commands"), "train").files()
  path = os.path.join(data, "pretrain-unlabeled+train.csv")
  with open(path + ".tmp", "w") as f:
    f.write("files\n" + "".join(p + "\n" for p in unlabeled + train))
  os.replace(path + ".tmp", path)
  log(f"data: {len(unlabeled)} unlabeled clips; {len(train)} train-split clips")
  return path


def pretrain(out, name, gin_files, manifest, seed, steps, extra_params=()):
  """Trains (or resumes) one run and exports it; returns its model_dir."""
  model_dir = os.path.join(out, "runs", slug(name))
  export_dir = os.path.join(model_dir, "export")
  if (export_metadata.is_export(export_dir)
      and export_metadata.read(export_dir)["training_step"] >= steps):
    log(f"pretrain {name}: done earlier ({model_dir})")
    return model_dir
  log(f"pretrain {name}: {steps} steps -> {model_dir}")
  started = time.time()
  params = [f"MANIFEST = '{manifest}'", f"train.seed = {seed}", f"train.total_steps = {steps}",
            f"build_adamw.warmup_steps = {steps // 6}",  # warmup: 1/6, as in the gin
            *extra_params]
  args = [sys.executable, "-m", "cola_tf.train", "--model_dir", model_dir]
  for gin_file in gin_files:
    args += ["--gin_file", gin_file]
  for p in params:
    args += ["--gin_param", p]
  run_logged(args, os.path.join(out, "logs", f"{os.path.basename(model_dir)}.log"),
             echo="| loss")
  log(f"pretrain {name}: {time.time() - started:.0f} s")
  return model_dir


def random_init_export(out, model_dir, seed):
  """The run's encoder, untrained, initialised with `seed` (kept inside the run's folder, so
  it always matches that run's configuration)."""
  output = os.path.join(model_dir, f"random_init_seed{seed}")
  if not export_metadata.is_export(output):
    run_logged([sys.executable, "-m", "cola_tf.export", "--model_dir", model_dir,
                "--random_init_seed", str(seed), "--output", output],
               os.path.join(out, "logs", "random_init.log"))
  return output


def probe_all(out, root, encoders, settings):
  """{(encoder name, task): test accuracy} via cola_tf.linear_probe on the Speech Commands
  tree `root`, cached in OUT/probes."""
  results = {}
  for name, export_dir in encoders:
    embedder, cache = None, {}
    for task in TASKS:
      report = os.path.join(out, "probes", slug(name), task)
      done = os.path.join(report, "results.json")
      if not os.path.isfile(done):
        if embedder is None:
          embedder = (embedders.LogMelStatsEmbedder() if export_dir is None
                      else embedders.ExportEmbedder(export_dir))
        protocol.run(embedder, protocol.ProbeTask(root, task, classes=35), settings=settings,
                     output=report, feature_cache=cache, verbose=False)
      with open(done) as f:
        results[(name, task)] = json.load(f)["test_accuracy"]
      log(f"probe {name:40s} {task:8s} test top-1 {results[(name, task)]:.4f}")
  return results


def heareval_all(out, data, encoders, epochs=HEAR_PROBE_GRID["max_epochs"][0]):
  """{encoder name: heareval linear-probe test top-1} on the 35-word keyword task."""
  from cola_tf.hear import tasks as hear_tasks  # pylint: disable=import-outside-toplevel
  tasks = os.path.join(out, "hear_tasks")
  if not os.path.isdir(tasks):
    shutil.rmtree(tasks + ".tmp", ignore_errors=True)
    hear_tasks.write_speech_commands_task(os.path.join(data, "speech_commands"), tasks + ".tmp",
                                          35, probe_grid={**HEAR_PROBE_GRID,
                                                          "max_epochs": [epochs]})
    os.replace(tasks + ".tmp", tasks)
  results = {}
  for name, export_dir in encoders:
    work = os.path.join(out, "heareval", slug(name))
    done = os.path.join(work, "score.json")
    if not os.path.isfile(done):
      log(f"heareval {name}: validator -> embeddings -> predictions ...")
      # One grid point of heareval's `faster` grid, the task's HEAR_PROBE_GRID overriding
      # what it sets: the protocol the published table used.
      run_logged([sys.executable, "-m", "cola_tf.hear_eval", "--model", export_dir,
                  "--tasks", tasks, "--work", work, "--grid", "faster", "--grid-points", "1"],
                 os.path.join(out, "logs", f"heareval-{os.path.basename(work)}.log"))
      scores_file = glob.glob(os.path.join(work, "embeddings", "*", "hear_module", "*",
                                           "test.predicted-scores.json"))[0]
      with open(scores_file) as f:
        scores = json.load(f)
      with open(done, "w") as f:
        json.dump({"test_top1_acc": scores["test"]["test_top1_acc"]}, f)
    with open(done) as f:
      results[name] = json.load(f)["test_top1_acc"]
    log(f"heareval {name:38s} keyword  test top-1 {results[name]:.4f}")
  return results


def training_history(model_dir):
  """[(step, loss, contrastive accuracy)] from the run's TensorBoard events."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  values = {}
  for events in sorted(glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(events):
      for v in event.summary.value:
        if v.tag in ("loss", "contrastive_accuracy"):
          values.setdefault(event.step, {})[v.tag] = float(tf.make_ndarray(v.tensor))
  return [(s, d.get("loss"), d.get("contrastive_accuracy")) for s, d in sorted(values.items())]


def _final_accuracy(run_dirs, variant, arm):
  """The last logged contrastive accuracy of an ablation's pretraining run, as text."""
  name = f"{arm} seed0" if variant.startswith("none") else f"ablation: {variant}"
  history = training_history(run_dirs[name]) if name in run_dirs else []
  return f"{history[-1][2]:.3f}" if history and history[-1][2] is not None else "-"


def random_group(arm):
  """The group name of an arm's random-initialisation control."""
  return f"random init ({arm})"


def standing(stats, group, other, task):
  """How `group` stands against `other` on `task`, in words: beyond the seed spread only when
  every seed is above (below) every seed of the other and mean - std clears mean + std."""
  mean, std, values = stats[(group, task)]
  o_mean, o_std, o_values = stats[(other, task)]
  side = "above" if mean > o_mean else "below"
  if len(values) < 2:
    return f"{side} (one seed: the seed spread is unknown)"
  its = "every seed of it" if len(o_values) > 1 else "it"
  if side == "above" and min(values) > max(o_values) and mean - std > o_mean + o_std:
    return f"**above, beyond the seed spread** (every seed above {its})"
  if side == "below" and max(values) < min(o_values) and mean + std < o_mean - o_std:
    return f"**below, beyond the seed spread** (every seed below {its})"
  return f"{side}, within the seed spread"


def summarise(rows):
  """rows: [(group, seed, task, accuracy)] -> {(group, task): (mean, std, [values])}."""
  table = {}
  for group, _, task, acc in rows:
    table.setdefault((group, task), []).append(acc)
  return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, v)
          for k, v in table.items()}


def write_outputs(out, rows, runs, groups, ablation_rows, words, speakers,
                  ablation_arm=ABLATION_ARM):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  with open(os.path.join(out, "results.csv.tmp"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["encoder", "seed", "probe", "task", "test_top1"])
    for group, seed, task, acc in rows + ablation_rows:
      probe_name, task_name = task.split(":") if ":" in task else ("linear_probe", task)
      writer.writerow([group, seed, probe_name, task_name, f"{acc:.4f}"])
  os.replace(os.path.join(out, "results.csv.tmp"), os.path.join(out, "results.csv"))

  stats = summarise(rows)
  columns = [t for t in ("keyword", "speaker", "heareval:keyword")
             if any(k[1] == t for k in stats)]
  titles = {"keyword": f"keyword ({words} words), linear probe",
            "speaker": f"speaker id ({speakers} speakers), linear probe",
            "heareval:keyword": f"keyword ({words} words), heareval linear probe"}

  def cell(key):
    if key not in stats:
      return "-"
    mean, std, values = stats[key]
    if len(values) == 1:
      return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f} ({', '.join(f'{v:.3f}' for v in values)})"

  lines = ["| encoder | " + " | ".join(titles[c] for c in columns) + " |",
           "|---|" + "---|" * len(columns)]
  for group in groups:
    lines.append(f"| {group} | " + " | ".join(cell((group, c)) for c in columns) + " |")
  lines += ["", "Test top-1: mean ± sample std over seeds (pretraining seeds for COLA, "
            "initialisation seeds for random init), then every seed's value. Chance: keyword "
            f"1/{words} = {1 / words:.3f}, speaker 1/{speakers} = {1 / speakers:.3f}.", ""]
  verdicts = []
  for task in ("keyword", "speaker"):
    for group in groups:
      if not group.startswith("cola") or (group, task) not in stats:
        continue
      against = [f"{label} {stats[(other, task)][0]:.3f}: {standing(stats, group, other, task)}"
                 for label, other in (("its random init", random_group(group)),
                                      (LOG_MEL, LOG_MEL))
                 if (other, task) in stats]
      verdicts.append(f"* {task}: {group} {stats[(group, task)][0]:.3f} vs "
                      + "; vs ".join(against))
  lines += verdicts
  if ablation_rows:
    lines += ["", f"Ablations (on {ablation_arm}, pretraining seed 0 each; linear probe test "
              "top-1; the pretraining run's final in-batch contrastive accuracy):", "",
              "| change | keyword | speaker | contrastive acc. |", "|---|---|---|---|"]
    by_variant = {}
    for variant, _, task, acc in ablation_rows:
      by_variant.setdefault(variant, {})[task] = acc
    for variant, accs in by_variant.items():
      lines.append(f"| {variant} | {accs.get('keyword', float('nan')):.3f} | "
                   f"{accs.get('speaker', float('nan')):.3f} | "
                   f"{_final_accuracy(dict(runs), variant, ablation_arm)} |")
  with open(os.path.join(out, "results.md.tmp"), "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(os.path.join(out, "results.md.tmp"), os.path.join(out, "results.md"))

  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for name, model_dir in runs:
    history = training_history(model_dir)
    if not history:
      continue
    steps = [h[0] for h in history]
    axes[0].plot(steps, [h[1] for h in history], label=name)
    axes[1].plot(steps, [h[2] for h in history], label=name)
  axes[0].set_title("COLA loss")
  axes[1].set_title("contrastive accuracy (in-batch)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "training_curves.png"), dpi=100)
  plt.close(fig)

  fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 4))
  axes = np.atleast_1d(axes)
  for ax, task in zip(axes, columns):
    present = [g for g in groups if (g, task) in stats]
    means = [stats[(g, task)][0] for g in present]
    stds = [stats[(g, task)][1] for g in present]
    colors = ["tab:gray" if g.startswith("log-mel") else "tab:orange" if g.startswith("random")
              else "tab:blue" for g in present]
    ax.bar(range(len(present)), means, yerr=stds, color=colors, capsize=4)
    for i, g in enumerate(present):
      values = stats[(g, task)][2]
      ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(present)), present, rotation=30, ha="right", fontsize=8)
    ax.set_title(titles[task], fontsize=9)
    ax.set_ylabel("test top-1")
    ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "probe_accuracy.png"), dpi=100)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--out", default=os.path.join("runs", "generated_speech"))
  p.add_argument("--speakers", type=int, default=40)
  p.add_argument("--words", type=int, default=35, help="keywords (the first N of the 35)")
  p.add_argument("--takes", type=int, default=2)
  p.add_argument("--unlabeled", type=int, default=400)
  p.add_argument("--data_seed", type=int, default=0)
  p.add_argument("--steps", type=int, default=300, help="pretraining steps per run")
  p.add_argument("--seeds", type=int, default=3, help="pretraining / random-init seeds")
  p.add_argument("--probe_epochs", type=int, default=PROBE_SETTINGS["epochs"])
  p.add_argument("--ablations", nargs="?", const="all", default=None,
                 help="also run the ablations (all, or the numbered files given: 1,7)")
  p.add_argument("--ablation_arm", default=ABLATION_ARM,
                 help=f"the arm the ablations change (default: {ABLATION_ARM}); it must be "
                      "one of --arms (its seed 0 is the ablations' reference)")
  p.add_argument("--curves", action="store_true",
                 help="also pretrain each arm once for --curve_steps with online evaluation "
                      "every --eval_every steps: learning_curves.png / .csv")
  p.add_argument("--curve_steps", type=int, default=3000)
  p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                 help=f"comma-separated subset of the arms ({', '.join(ARMS)}; default: "
                      f"{', '.join(DEFAULT_ARMS)})")
  p.add_argument("--curve_arms", default=None,
                 help="the arms of --curves (default: --arms)")
  p.add_argument("--prior_curves", default=None,
                 help="an earlier run's learning_curves.csv: its other arms are drawn too")
  p.add_argument("--eval_every", type=int, default=250)
  p.add_argument("--no_heareval", action="store_true")
  p.add_argument("--heareval_epochs", type=int, default=HEAR_PROBE_GRID["max_epochs"][0],
                 help="max epochs of heareval's linear probe")
  a = p.parse_args(argv)
  for flag, names in (("--arms", a.arms), ("--curve_arms", a.curve_arms or a.arms)):
    unknown = [n for n in names.split(",") if n not in ARMS]
    if unknown:
      p.error(f"{flag}: unknown {unknown}; choose from {list(ARMS)}")
  arms = {n: ARMS[n] for n in a.arms.split(",")}
  if a.prior_curves and not a.curves:
    p.error("--prior_curves draws beside this run's curves: add --curves")
  if a.ablations and a.ablation_arm not in arms:
    p.error(f"--ablation_arm {a.ablation_arm!r} must be one of --arms ({a.arms})")
  curve_arms = {n: ARMS[n] for n in (a.curve_arms or a.arms).split(",")}
  started = time.time()
  out = os.path.abspath(a.out)
  os.makedirs(out, exist_ok=True)
  data = make_data(out, a.speakers, a.takes, a.unlabeled, a.data_seed, a.words)
  manifest = write_manifest(data)
  labelled = os.path.join(data, "speech_commands")  # the probes' Speech Commands tree
  settings = fit.ProbeSettings(**{**PROBE_SETTINGS, "epochs": a.probe_epochs})

  curve_runs = []
  if a.curves:
    curve_runs = [(arm, pretrain(out, f"{arm} curve", [gin_file], manifest, 0, a.curve_steps,
                                 curves.eval_params(data, a.eval_every)))
                  for arm, gin_file in curve_arms.items()]
    curves.write(out, curve_runs, curves.logmel_levels(data),
                 curves.read_prior(a.prior_curves, [arm for arm, _ in curve_runs]))
    log(f"learning curves: {out}/learning_curves.png, learning_curves.csv")
  # The curve run of an arm is its seed-0 run when it trains as long: no second run.
  seed0_runs = dict(curve_runs) if a.curve_steps == a.steps else {}

  runs, encoders = [], [(LOG_MEL, None)]
  for arm, gin_file in arms.items():
    arm_runs = []
    for seed in range(a.seeds):
      model_dir = (seed0_runs[arm] if seed == 0 and arm in seed0_runs else
                   pretrain(out, f"{arm} seed{seed}", [gin_file], manifest, seed, a.steps))
      arm_runs.append((f"{arm} seed{seed}", model_dir))
      encoders.append((f"{arm} seed{seed}", os.path.join(model_dir, "export")))
    for seed in range(a.seeds):
      encoders.append((f"{random_group(arm)} seed{seed}",
                       random_init_export(out, arm_runs[0][1], seed)))
    runs += arm_runs

  def group_of(name):
    return LOG_MEL if name.startswith("log-mel") else name.rsplit(" seed", 1)[0]

  def seed_of(name):
    return int(name.rsplit(" seed", 1)[1]) if " seed" in name else 0

  probes = probe_all(out, labelled, encoders, settings)
  rows = [(group_of(n), seed_of(n), t, acc) for (n, t), acc in probes.items()]
  if not a.no_heareval:
    firsts = {f"{arm} seed0" for arm in arms} | {f"{random_group(arm)} seed0" for arm in arms}
    for name, acc in heareval_all(out, data, [(n, e) for n, e in encoders if n in firsts],
                                  a.heareval_epochs).items():
      rows.append((group_of(name), seed_of(name), "heareval:keyword", acc))

  ablation_rows = []
  if a.ablations:
    base = f"{a.ablation_arm} seed0"
    for task in TASKS:
      ablation_rows.append(("none: the arm as configured (seed 0)", 0, task,
                            probes[(base, task)]))
    # On another arm than the default, runs and probes are named with it: one --out holds
    # both arms' ablations without one reusing the other's run.
    on_arm = "" if a.ablation_arm == ABLATION_ARM else f" on {a.ablation_arm}"
    ablation_encoders, variant_of = [], {}
    for variant, gin_file in ablations(a.ablations, a.ablation_arm):
      name = f"ablation {variant}{on_arm}"
      model_dir = pretrain(out, name, [ARMS[a.ablation_arm], gin_file], manifest, 0, a.steps)
      runs.append((f"ablation: {variant}", model_dir))
      ablation_encoders.append((name, os.path.join(model_dir, "export")))
      variant_of[name] = variant
    for (name, task), acc in probe_all(out, labelled, ablation_encoders, settings).items():
      ablation_rows.append((variant_of[name], 0, task, acc))

  groups = [LOG_MEL] + [g for arm in arms for g in (random_group(arm), arm)]
  words = len(speech_commands.keyword_task(labelled)[0])
  speakers = len(speech_commands.speaker_task(labelled)[0])
  write_outputs(out, rows, runs, groups, ablation_rows, words, speakers, a.ablation_arm)
  with open(os.path.join(out, "results.md")) as f:
    print("\n" + f.read(), flush=True)
  log(f"done in {(time.time() - started) / 60:.1f} min: {out}/results.md, results.csv, "
      "training_curves.png, probe_accuracy.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
