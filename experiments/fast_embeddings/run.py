r"""Fast (one encoder pass per clip) against exact (the encoder on every window) HEAR
embeddings, through heareval, on a word-event task and a keyword scene task.

  python experiments/fast_embeddings/run.py --speech_commands DIR --runs NAME=MODEL_DIR,...
      [--out runs/fast_embeddings] [--event_clips 120,30,60]

1. Tasks, from a Speech Commands v0.02 tree (scripts/make_speech_commands_synth.py writes
   one): `word_events` (6 s clips holding 2-3 of the ten HEAR keywords at random onsets
   over noise; labels: the word and its spoken extent, speaker-disjoint splits as the
   tree's lists say; heareval's onset F-measure, 200 ms collar) and `speech_commands_35`
   (1 s clips, 35 words, heareval's linear probe: cola_tf.hear.tasks).
2. Each training run (its model_dir) is exported again (`cola_tf.export.frozen_encoder.export`:
   the fast functions are part of every export now) to OUT/exports/NAME.
3. `python -m cola_tf.hear_eval` on both tasks per export, with `--model-options
   '{"fast": false}'` and `'{"fast": true}'`; one grid point (the tasks' grids fix it).
   Embedding time is heareval's own (profile.embeddings.json).
Writes OUT/results.csv (a row per run, mode and task) and OUT/results.md (per run, and
mean +- std over runs of the scores and of fast - exact). Finished stages are kept and
skipped when rerun; child output goes to OUT/logs/.
"""
import argparse
import csv
import glob
import json
import os
import statistics
import sys

import numpy as np
import soundfile as sf

from cola_tf import SAMPLE_RATE
from cola_tf.export import metadata as export_metadata
from cola_tf import files
from cola_tf.hear import harness as hear_harness
from cola_tf.hear import process as hear_process
from cola_tf.hear import tasks as hear_tasks
from cola_tf import logs
from cola_tf.data import sources
from cola_tf.probe.speech_commands import TEN_WORDS

log = logs.logger("fast_embeddings")
EVENT_SECONDS = 6.0
# One grid point, the same for both modes: a 1-hidden-layer MLP. heareval validates event
# tasks through sed_eval (minutes per validation on 2 cores): three validations.
EVENT_GRID = {"hidden_layers": [1], "hidden_dim": [512], "lr": [1e-3], "max_epochs": [30],
              "patience": [2], "check_val_every_n_epoch": [10], "batch_size": [256]}
KEYWORD_GRID = {"batch_size": [64], "max_epochs": [40], "patience": [10],
                "check_val_every_n_epoch": [2], "lr": [1e-3]}
SPLITS = {"train": "train", "validation": "valid", "test": "test"}


def speech_extent(word_audio, rate=SAMPLE_RATE):
  """(first, last) sample of the speech in a 1 s clip: 10 ms frames above 10% of the peak
  frame's RMS."""
  frames = word_audio[:word_audio.size // 160 * 160].reshape(-1, 160)
  rms = np.sqrt(np.mean(np.square(frames), axis=1))
  loud = np.flatnonzero(rms > 0.1 * rms.max())
  return loud[0] * 160, (loud[-1] + 1) * 160


def event_clip(words, rng):
  """(6 s mixture, [{label, start, end} in ms]): each word's speech at a random level and
  onset, no overlaps, over low noise."""
  audio = 0.003 * rng.standard_normal(int(EVENT_SECONDS * SAMPLE_RATE))
  events, cursor = [], int(rng.uniform(0.1, 0.8) * SAMPLE_RATE)
  for word, path in words:
    speech, rate = sf.read(path, dtype="float32")
    if rate != SAMPLE_RATE:
      raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate}")
    first, last = speech_extent(speech)
    speech = speech[first:last] / max(np.abs(speech).max(), 1e-6) * rng.uniform(0.1, 0.6)
    if cursor + speech.size > audio.size:
      break
    audio[cursor:cursor + speech.size] += speech
    events.append({"label": word, "start": 1000.0 * cursor / SAMPLE_RATE,
                   "end": 1000.0 * (cursor + speech.size) / SAMPLE_RATE})
    cursor += speech.size + int(rng.uniform(0.4, 1.6) * SAMPLE_RATE)
  return np.clip(audio, -1, 1).astype(np.float32), events


def write_word_events_task(src, dst, clips_per_split, seed=0):
  """A HEAR event task (hear-preprocess layout) of word events from the Speech Commands
  tree `src`: `clips_per_split` = {split: clips}; returns its folder."""
  rng = np.random.default_rng(seed)
  by_split = {}
  for path, word, split in sources.speech_commands_clips(src):
    if word in TEN_WORDS:
      by_split.setdefault(SPLITS[split], []).append((word, path))
  task_dir = os.path.join(dst, "word_events")
  for split, count in clips_per_split.items():
    pool = by_split.get(split, [])
    if len(pool) < 3:
      raise ValueError(f"--speech_commands {src!r}: too few keyword clips in its {split} split")
    os.makedirs(os.path.join(task_dir, str(SAMPLE_RATE), split), exist_ok=True)
    labels = {}
    for i in range(count):
      picks = [pool[j] for j in rng.choice(len(pool), size=rng.integers(2, 4), replace=False)]
      audio, events = event_clip(picks, rng)
      name = f"{split}-{i:04d}.wav"
      sf.write(os.path.join(task_dir, str(SAMPLE_RATE), split, name), audio, SAMPLE_RATE,
               subtype="PCM_16")
      labels[name] = events
    files.atomic_write(os.path.join(task_dir, f"{split}.json"), json.dumps(labels, indent=1))
  files.atomic_write(os.path.join(task_dir, "labelvocabulary.csv"), "idx,label\n" + "".join(
      f"{i},{w}\n" for i, w in enumerate(sorted(TEN_WORDS))))
  files.atomic_write(os.path.join(task_dir, hear_tasks.TASK_METADATA), json.dumps({
      "task_name": "word_events", "version": "generated", "mode": "full",
      "embedding_type": "event", "prediction_type": "multilabel",
      "split_mode": "trainvaltest", "splits": list(clips_per_split),
      "sample_duration": EVENT_SECONDS, "sample_rate": SAMPLE_RATE,
      "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
      "evaluation_params": {"task_specific_param_grid": EVENT_GRID}}, indent=1))
  return task_dir


def make_tasks(src, out, event_clips):
  tasks = os.path.join(out, "tasks")
  if not os.path.isdir(tasks):
    staging = tasks + ".tmp"
    log(f"writing the tasks to {tasks}")
    write_word_events_task(src, staging, dict(zip(("train", "valid", "test"), event_clips)))
    hear_tasks.write_speech_commands_task(src, staging, 35, probe_grid=KEYWORD_GRID)
    os.replace(staging, tasks)
  return tasks


def export_run(name, model_dir, out):
  from cola_tf.export import frozen_encoder  # pylint: disable=import-outside-toplevel
  path = os.path.join(out, "exports", name)
  if not os.path.isdir(path):
    log(f"exporting {name} ({model_dir})")
    frozen_encoder.export(model_dir, path)
  return path


def evaluate(name, export, tasks, out, fast):
  """{task: {metric, value, embedding_s}} of one export in one mode."""
  work = os.path.join(out, "work")
  options = {"fast": fast}
  mode = hear_harness.options_suffix(options)[1:]  # 'fast=true': heareval's naming
  done = os.path.join(out, "scores", f"{name}-{mode}.json")
  if not os.path.isfile(done):
    hear_process.run_logged(
        [sys.executable, "-m", "cola_tf.hear_eval", "--model", export, "--tasks", tasks,
         "--work", work, "--grid-points", "1", "--model-options", json.dumps(options)],
        dict(os.environ), os.path.join(out, "logs", f"{name}-{mode}.log"),
        f"hear_eval {name} {mode}")
    model_id = export_metadata.identity(export_metadata.read(export))
    scores = {}
    for task_dir in sorted(glob.glob(os.path.join(work, "embeddings", model_id,
                                                  hear_harness.MODULE + f"-{mode}", "*",
                                                  ""))):
      with open(os.path.join(task_dir, "test.predicted-scores.json")) as f:
        test = json.load(f)
      with open(os.path.join(task_dir, "profile.embeddings.json")) as f:
        seconds = json.load(f)["time_elapsed"]
      metric, value, _, _ = hear_tasks.primary_score(test, hear_tasks.read_metadata(task_dir))
      scores[os.path.basename(task_dir.rstrip("/"))] = {"metric": metric, "value": value,
                                                        "embedding_s": seconds}
    os.makedirs(os.path.dirname(done), exist_ok=True)
    files.atomic_write(done, json.dumps(scores, indent=1))
  with open(done) as f:
    return json.load(f)


def write_results(rows, out):
  """OUT/results.csv and OUT/results.md from [{run, mode, task, metric, value, embedding_s}]."""
  with files.atomic_output(os.path.join(out, "results.csv"), suffix=".csv") as tmp:
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)
  lines = ["| task | metric | run | exact | fast | fast - exact | embedding s exact / fast |",
           "|---|---|---|---|---|---|---|"]
  for task in sorted({r["task"] for r in rows}):
    diffs, pairs = [], {}
    for r in rows:
      if r["task"] == task:
        pairs.setdefault(r["run"], {})[r["mode"]] = r
    for run, modes in sorted(pairs.items()):
      exact, fast = modes["exact"], modes["fast"]
      diffs.append(fast["value"] - exact["value"])
      lines.append(f"| {task} | {exact['metric']} | {run} | {exact['value']:.4f} | "
                   f"{fast['value']:.4f} | {diffs[-1]:+.4f} | {exact['embedding_s']:.1f} / "
                   f"{fast['embedding_s']:.1f} |")
    if len(diffs) > 1:
      values = {m: [p[m]["value"] for p in pairs.values()] for m in ("exact", "fast")}
      lines.append(f"| {task} | | mean +- std ({len(diffs)} runs) | "
                   f"{statistics.mean(values['exact']):.4f} +- "
                   f"{statistics.stdev(values['exact']):.4f} | "
                   f"{statistics.mean(values['fast']):.4f} +- "
                   f"{statistics.stdev(values['fast']):.4f} | {statistics.mean(diffs):+.4f} +- "
                   f"{statistics.stdev(diffs):.4f} | |")
  files.atomic_write(os.path.join(out, "results.md"), "\n".join(lines) + "\n")
  print("\n".join(lines), flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--speech_commands", required=True, help="a Speech Commands v0.02 tree")
  p.add_argument("--runs", required=True, help="NAME=MODEL_DIR,... (training runs)")
  p.add_argument("--out", default="runs/fast_embeddings")
  p.add_argument("--event_clips", default="120,30,60",
                 help="word-event clips in train, valid, test")
  a = p.parse_args(argv)
  runs = dict(item.split("=", 1) for item in a.runs.split(","))
  out = os.path.abspath(a.out)
  tasks = make_tasks(a.speech_commands, out, [int(n) for n in a.event_clips.split(",")])
  rows = []
  for name, model_dir in runs.items():
    export = export_run(name, model_dir, out)
    for fast in (False, True):
      for task, score in evaluate(name, export, tasks, out, fast).items():
        rows.append({"run": name, "mode": "fast" if fast else "exact", "task": task, **score})
  write_results(rows, out)


if __name__ == "__main__":
  main()
