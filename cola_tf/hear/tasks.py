"""HEAR tasks in hear-preprocess's layout: finding them, resampling them, reading their scores.

A task folder holds `task_metadata.json`, `labelvocabulary.csv`, one `SPLIT.json` per split
(or fold) and the audio as `RATE/SPLIT/*.wav`. heareval reads `16000/SPLIT/` only and never
resamples, while the public HEAR archives ship 48 kHz (and other rates). `task_view` builds a
folder heareval can read: tasks with a 16000/ folder are linked as they are; the others are
resampled into a folder of their own (resumable: finished files are kept, each file is written
atomically, and a `.complete` marker says a task is done).
"""
import concurrent.futures
import json
import math
import os
import shutil
import time

import numpy as np
import scipy.signal
import soundfile as sf

from cola_tf import SAMPLE_RATE
from cola_tf import files
from cola_tf import logs
from cola_tf.data import sources
from cola_tf.probe.speech_commands import SPLITS
from cola_tf.probe.speech_commands import TEN_WORDS
from cola_tf.probe.speech_commands import silence_cuts

TASK_METADATA = "task_metadata.json"
COMPLETE = ".complete"
PROGRESS_EVERY_S = 10.0


log = logs.logger("hear_eval")


def read_metadata(task_dir):
  path = os.path.join(task_dir, TASK_METADATA)
  if not os.path.isfile(path):
    raise ValueError(f"{task_dir!r} is not a HEAR task (no {TASK_METADATA})")
  with open(path) as f:
    return json.load(f)


def find_tasks(tasks_dir, only="all"):
  """Task folders under `tasks_dir` (those holding task_metadata.json), sorted by name."""
  if not os.path.isdir(tasks_dir):
    raise ValueError(f"--tasks {tasks_dir!r} is not a directory")
  names = sorted(n for n in os.listdir(tasks_dir)
                 if os.path.isfile(os.path.join(tasks_dir, n, TASK_METADATA)))
  if only != "all":
    if only not in names:
      raise ValueError(f"--task {only!r}: no such task in {tasks_dir!r} (found {names})")
    names = [only]
  if not names:
    raise ValueError(f"--tasks {tasks_dir!r} holds no HEAR task (no */{TASK_METADATA})")
  return [os.path.join(tasks_dir, n) for n in names]


def audio_rates(task_dir):
  """The sample rates a task has audio folders for."""
  return sorted(int(n) for n in os.listdir(task_dir)
                if n.isdigit() and os.path.isdir(os.path.join(task_dir, n)))


def _resample_file(src, dst, rate):
  """One clip to mono float at `rate`, written as 16-bit PCM (hear-preprocess's format)."""
  audio, source_rate = sf.read(src, dtype="float64", always_2d=True)
  audio = audio.mean(axis=1)
  if source_rate != rate:
    gcd = math.gcd(rate, source_rate)
    audio = scipy.signal.resample_poly(audio, rate // gcd, source_rate // gcd)
  with files.atomic_output(dst, suffix=".wav") as tmp:
    sf.write(tmp, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")


def _pending_files(src_audio, dst_audio):
  pending, done = [], 0
  for split in sorted(os.listdir(src_audio)):
    if not os.path.isdir(os.path.join(src_audio, split)):
      continue
    os.makedirs(os.path.join(dst_audio, split), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(src_audio, split))):
      if os.path.exists(os.path.join(dst_audio, split, name)):
        done += 1
      elif not name.startswith("."):
        pending.append((os.path.join(src_audio, split, name),
                        os.path.join(dst_audio, split, name)))
  return pending, done


def resample_task(task_dir, out_dir, rate=SAMPLE_RATE, threads=None):
  """Writes `out_dir`: the task's metadata files and its audio at `rate` in `RATE/SPLIT/`,
  from the highest rate the task has. Resumes where a previous call stopped. Unreadable
  files are all named at the end (ValueError): heareval needs every listed clip."""
  if os.path.exists(os.path.join(out_dir, COMPLETE)):
    return out_dir
  rates = audio_rates(task_dir)
  if not rates:
    raise ValueError(f"{task_dir!r}: no audio folder (expected RATE/SPLIT/*.wav)")
  source_rate = rates[-1]
  os.makedirs(out_dir, exist_ok=True)
  for name in os.listdir(task_dir):
    if os.path.isfile(os.path.join(task_dir, name)):
      shutil.copyfile(os.path.join(task_dir, name), os.path.join(out_dir, name))
  pending, done = _pending_files(os.path.join(task_dir, str(source_rate)),
                                 os.path.join(out_dir, str(rate)))
  task = os.path.basename(task_dir.rstrip("/"))
  log(f"{task}: resampling {len(pending)} clips from {source_rate} Hz to {rate} Hz "
      f"({done} done earlier) -> {out_dir}")
  failed = _resample_all(task, pending, rate, threads)
  if failed:
    raise ValueError(f"{task}: {len(failed)} clip(s) could not be resampled (rerun resumes "
                     "after fixing them): " + "; ".join(f"{p}: {e}" for p, e in failed[:5]))
  with open(os.path.join(out_dir, COMPLETE), "w") as f:
    json.dump({"source_rate": source_rate, "rate": rate, "clips": len(pending) + done}, f)
  return out_dir


def _resample_all(task, pending, rate, threads):
  failed, started, last = [], time.time(), time.time()
  with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
    futures = {pool.submit(_resample_file, src, dst, rate): src for src, dst in pending}
    for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
      try:
        future.result()
      except Exception as e:  # pylint: disable=broad-except  (named below, run goes on)
        failed.append((futures[future], f"{type(e).__name__}: {e}"))
      if time.time() - last >= PROGRESS_EVERY_S or i == len(pending):
        last = time.time()
        log(f"{task}: resampled {i}/{len(pending)} clips ({last - started:.0f} s)")
  return failed


def task_view(tasks, view_dir, resampled_dir, rate=SAMPLE_RATE):
  """A folder of the given task folders that heareval can read at `rate`: a link to each
  task that has `rate` audio, else to its resampled copy in `resampled_dir`."""
  os.makedirs(view_dir, exist_ok=True)
  for name in os.listdir(view_dir):
    if os.path.islink(os.path.join(view_dir, name)):
      os.remove(os.path.join(view_dir, name))
  for task_dir in tasks:
    name = os.path.basename(task_dir.rstrip("/"))
    source = task_dir
    if rate not in audio_rates(task_dir):
      source = resample_task(task_dir, os.path.join(resampled_dir, name), rate)
    os.symlink(os.path.abspath(source), os.path.join(view_dir, name))
  return view_dir


def primary_score(scores, metadata):
  """(score name, value, std or None, number of folds) from heareval's
  test.predicted-scores.json: the task's first evaluation score, averaged over folds for
  k-fold tasks. heareval stores the primary score as `test_score`."""
  name = metadata["evaluation"][0]
  if "aggregated_scores" in scores:
    agg = scores["aggregated_scores"]
    folds = sum(1 for k, v in scores.items() if isinstance(v, dict) and "test_score" in v)
    return name, agg["test_score_mean"], agg["test_score_std"], folds
  return name, scores["test"]["test_score"], None, 1


def secondary_scores(scores, metadata):
  """{score name: value (mean over folds)} for the task's other evaluation scores."""
  source = scores.get("aggregated_scores") or scores["test"]
  suffix = "_mean" if "aggregated_scores" in scores else ""
  return {n: source.get(f"test_{n}{suffix}") for n in metadata["evaluation"][1:]}


def describe(task, scores, metadata):
  """One line: the primary score (± std over folds) and the others."""
  name, value, std, folds = primary_score(scores, metadata)
  text = f"{task}: {name} {value:.4f}"
  if std is not None:
    text += f" +- {std:.4f} over {folds} folds"
  others = secondary_scores(scores, metadata)
  if others:
    text += " (" + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in others.items()) + ")"
  return text


def _load_1s(path):
  audio, rate = sf.read(path, dtype="float32", always_2d=True)
  audio = audio.mean(axis=1)
  if rate != SAMPLE_RATE:
    raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate} Hz")
  return np.pad(audio, (0, max(0, SAMPLE_RATE - audio.size)))[:SAMPLE_RATE]


def write_speech_commands_task(src, dst, classes=12, probe="linear", probe_grid=None):
  """Writes a Speech Commands v0.02 tree as a HEAR task in `dst` (see
  cola_tf.prepare_speech_commands for the layout); returns (task_dir, {split: clips},
  vocabulary)."""
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
