r"""Writes a Speech Commands v0.02 tree as a HEAR task directory (hear-preprocess format).

  python -m cola_tf.prepare_speech_commands --src RAW_V002_DIR --dst TASKS_DIR \
      [--classes 12|35] [--probe linear|default] [--probe_grid JSON]

Output: TASKS_DIR/speech_commands-v0.0.2-full/ (12 classes, HEAR's task) or
TASKS_DIR/speech_commands_35-v0.0.2-full/ (35 classes, the COLA / audax protocol) with
task_metadata.json, labelvocabulary.csv (idx,label), train.json / valid.json / test.json
({file: [label]}) and 16000/{train,valid,test}/*.wav: mono 16-bit 16 kHz clips padded or
trimmed to exactly 1 s. Splits follow validation_list.txt and testing_list.txt (train = the
rest). 12 classes = the ten words yes no up down left right on off stop go, `_unknown_` for
every other word, and `_silence_`: 1 s cuts of `_background_noise_`, about one twelfth of each
split, the noise files dealt out to the splits in turn so no recording spans two splits.
`--probe linear` (default) asks heareval for a linear probe (0 hidden layers) through
evaluation_params.task_specific_param_grid; `--probe default` leaves heareval's grid.
`--probe_grid '{"max_epochs": [100], "batch_size": [64]}'` adds more of heareval's
hyperparameters to that grid (its "faster" grid, 10 epochs at batch 1024 with patience 1-3,
barely trains on a small corpus).
"""
import argparse
import json
import os
import sys

import numpy as np
import soundfile as sf

from cola_tf import SAMPLE_RATE
from cola_tf import logs
from cola_tf.data import sources
from cola_tf.probe.speech_commands import SPLITS
from cola_tf.probe.speech_commands import TEN_WORDS
from cola_tf.probe.speech_commands import silence_cuts



def _load_1s(path):
  audio, rate = sf.read(path, dtype="float32", always_2d=True)
  audio = audio.mean(axis=1)
  if rate != SAMPLE_RATE:
    raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate} Hz")
  return np.pad(audio, (0, max(0, SAMPLE_RATE - audio.size)))[:SAMPLE_RATE]


def prepare(src, dst, classes=12, probe="linear", probe_grid=None):
  """Writes the task; returns {split: number of clips}."""
  if classes not in (12, 35):
    raise ValueError(f"--classes must be 12 or 35, got {classes}")
  try:
    clips = sources.speech_commands_clips(src)
  except ValueError as e:
    raise ValueError(f"--src: {e}") from None
  if not clips:
    raise ValueError(f"--src {src!r}: no word folders with .wav clips")
  task = "speech_commands" if classes == 12 else "speech_commands_35"
  task_dir = os.path.join(dst, f"{task}-v0.0.2-full")
  labels = {s: {} for s in SPLITS}
  for s in SPLITS:
    os.makedirs(os.path.join(task_dir, str(SAMPLE_RATE), s), exist_ok=True)
  for path, word, sc_split in clips:
    label = word if classes == 35 or word in TEN_WORDS else "_unknown_"
    split = {"validation": "valid"}.get(sc_split, sc_split)
    out_name = f"{word}-{os.path.basename(path)}"
    sf.write(os.path.join(task_dir, str(SAMPLE_RATE), split, out_name), _load_1s(path),
             SAMPLE_RATE, subtype="PCM_16")
    labels[split][out_name] = [label]
  vocabulary = sorted({l[0] for split in labels.values() for l in split.values()})
  if classes == 12:
    wanted = {s: max(1, len(labels[s]) // 11) for s in SPLITS}
    for split, cuts in silence_cuts(src, wanted).items():
      for out_name, cut in cuts:
        sf.write(os.path.join(task_dir, str(SAMPLE_RATE), split, out_name), cut, SAMPLE_RATE,
                 subtype="PCM_16")
        labels[split][out_name] = ["_silence_"]
    vocabulary = sorted(set(vocabulary) | {"_silence_"})
  for s in SPLITS:
    if not labels[s]:
      raise ValueError(f"--src {src!r}: the {s} split is empty")
    with open(os.path.join(task_dir, f"{s}.json"), "w") as f:
      json.dump(labels[s], f, indent=1, sort_keys=True)
  with open(os.path.join(task_dir, "labelvocabulary.csv"), "w") as f:
    f.write("idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(vocabulary)))
  metadata = {
      "task_name": task, "version": "v0.0.2", "embedding_type": "scene",
      "prediction_type": "multiclass", "split_mode": "trainvaltest", "sample_duration": 1.0,
      "evaluation": ["top1_acc"], "mode": "full", "default_mode": "full",
      "splits": list(SPLITS), "sample_rate": SAMPLE_RATE,
      "download_urls": [{"name": "source", "url": os.path.abspath(src)}],
      "cola_tf_classes": classes,
  }
  if probe not in ("linear", "default"):
    raise ValueError(f"--probe must be linear or default, got {probe!r}")
  grid = {"hidden_layers": [0]} if probe == "linear" else {}
  for name, values in (probe_grid or {}).items():
    if not isinstance(values, list) or not values:
      raise ValueError(f"--probe_grid: {name!r} must map to a non-empty list, got {values!r}")
    grid[name] = values
  if grid:
    metadata["evaluation_params"] = {"task_specific_param_grid": grid}
  with open(os.path.join(task_dir, "task_metadata.json"), "w") as f:
    json.dump(metadata, f, indent=1)
  return task_dir, {s: len(labels[s]) for s in SPLITS}, vocabulary


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--src", required=True, help="Speech Commands v0.02 root")
  p.add_argument("--dst", required=True, help="HEAR tasks directory to write into")
  p.add_argument("--classes", type=int, default=12, choices=[12, 35])
  p.add_argument("--probe", default="linear", choices=["linear", "default"])
  p.add_argument("--probe_grid", default="{}",
                 help="JSON object of heareval hyperparameter lists added to the task's grid")
  a = p.parse_args(argv)
  try:
    try:
      grid = json.loads(a.probe_grid)
    except json.JSONDecodeError as e:
      raise ValueError(f"--probe_grid is not JSON: {e}") from None
    if not isinstance(grid, dict):
      raise ValueError(f"--probe_grid must be a JSON object, got {a.probe_grid!r}")
    task_dir, counts, vocabulary = prepare(a.src, a.dst, a.classes, a.probe, grid)
  except ValueError as e:
    logs.log(f"error: {e}", "prepare_speech_commands", error=True)
    return 2
  logs.log(f"wrote {task_dir}: {counts} clips, {len(vocabulary)} labels")
  return 0


if __name__ == "__main__":
  sys.exit(main())
