"""Labelled evaluation sets: tasks with train / valid / test splits of audio files, for the
online evaluation during pretraining (and any probe over files).

Each set's `tasks()` returns [LabelledTask]; tasks of one set may share files (Speech
Commands' keyword and speaker tasks), which are then embedded once.
* `SyntheticEvalSet`: the embedded labelled corpus (`data.synthetic.write_labelled_corpus`):
  'kind' (4 sound kinds, splits by source) and 'identity' (the source, splits by clip).
* `SpeechCommandsEvalSet`: a Speech Commands v0.02 tree: 'keyword' (its split lists) and
  'speaker' (as the linear probe's tasks).
* `HearTaskEvalSet`: a HEAR task folder (hear-preprocess's layout), its own splits; k-fold
  tasks use the last fold as test, the one before as valid, the rest as train.
* `ManifestEvalSet`: a CSV with a files column, a label column and a split column
  (train / valid / test; 'validation' and 'val' read as valid).
"""
import csv
import dataclasses
import json
import os

import gin
import tensorflow as tf

from cola_tf.data import sources
from cola_tf.data import synthetic
from cola_tf.probe import speech_commands
from cola_tf.probe.speech_commands import SPLITS
from cola_tf.probe.speech_commands import Split

SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid",
               "test": "test"}


@dataclasses.dataclass
class LabelledTask:
  name: str
  classes: list
  splits: dict  # {'train' | 'valid' | 'test': Split}

  def check(self, where):
    for split in SPLITS:
      if not self.splits.get(split) or not len(self.splits[split]):
        raise ValueError(f"{where}: task {self.name!r} has no {split} clips")
      if self.splits[split].arrays:
        raise ValueError(f"{where}: task {self.name!r}: clips must be files")
    return self


def _task(name, rows, where):
  """LabelledTask from [(path, label, split)] rows."""
  classes = sorted({label for _, label, _ in rows})
  splits = {s: Split([], []) for s in SPLITS}
  for path, label, split in rows:
    if split not in SPLIT_NAMES:
      raise ValueError(f"{where}: split {split!r} of {path} is not one of "
                       f"{sorted(SPLIT_NAMES)}")
    splits[SPLIT_NAMES[split]].files.append(path)
    splits[SPLIT_NAMES[split]].labels.append(label)
  return LabelledTask(name, classes, splits).check(where)


@gin.configurable
class SyntheticEvalSet:
  """The embedded labelled corpus: `identities_per_kind` new sources of each of the 4 kinds,
  `clips_per_identity` clips each (generated once into the cache)."""

  def __init__(self, identities_per_kind=12, clips_per_identity=8, seconds=1.0, seed=1,
               cache_dir=None):
    def write(root):
      from cola_tf import logs  # pylint: disable=import-outside-toplevel
      logs.log(f"generating the embedded labelled evaluation corpus ({4 * identities_per_kind}"
               f" sources x {clips_per_identity} clips of {seconds:g} s) in {root}")
      synthetic.write_labelled_corpus(root, identities_per_kind, clips_per_identity, seconds,
                                      seed)

    self.root = synthetic.cached_corpus(
        "synthetic-eval", [identities_per_kind, clips_per_identity, seconds, seed], write,
        cache_dir)

  def describe(self):
    return f"the embedded labelled corpus ({self.root})"

  def tasks(self):
    with open(os.path.join(self.root, synthetic.LABELS_FILE)) as f:
      rows = list(csv.DictReader(f))
    where = os.path.join(self.root, synthetic.LABELS_FILE)
    paths = [os.path.join(self.root, r["files"]) for r in rows]
    return [_task("kind", [(p, r["kind"], r["kind_split"]) for p, r in zip(paths, rows)], where),
            _task("identity", [(p, r["identity"], r["identity_split"])
                               for p, r in zip(paths, rows)], where)]


@gin.configurable
class SpeechCommandsEvalSet:
  """A Speech Commands v0.02 tree: the linear probe's keyword and / or speaker tasks."""

  def __init__(self, root=gin.REQUIRED, tasks=speech_commands.TASKS, classes=35,
               min_speaker_clips=10):
    self.root, self.task_names = root, tuple(tasks)
    self.classes, self.min_speaker_clips = classes, min_speaker_clips

  def describe(self):
    return f"Speech Commands tree {self.root} ({', '.join(self.task_names)})"

  def tasks(self):
    out = []
    for name in self.task_names:
      classes, splits = speech_commands.load_task(name, self.root, self.classes,
                                                  self.min_speaker_clips)
      out.append(LabelledTask(name, list(classes), splits).check(self.root))
    return out


def _hear_splits(metadata, task_dir):
  """{our split: [HEAR split or fold names]} of a HEAR task."""
  if metadata.get("split_mode") == "new_split_kfold":
    folds = [f"fold{i:02d}" for i in range(int(metadata["nfolds"]))]
    return {"train": folds[:-2], "valid": [folds[-2]], "test": [folds[-1]]}
  names = {s: [s] for s in SPLITS}
  for split, found in names.items():
    if not tf.io.gfile.exists(os.path.join(task_dir, f"{found[0]}.json")):
      raise ValueError(f"HearTaskEvalSet: {task_dir} has no {found[0]}.json")
  return names


@gin.configurable
class HearTaskEvalSet:
  """A HEAR scene task (one label per clip; the first label of multi-label clips)."""

  def __init__(self, task_dir=gin.REQUIRED):
    self.task_dir = task_dir

  def describe(self):
    return f"HEAR task {self.task_dir}"

  def tasks(self):
    path = os.path.join(self.task_dir, "task_metadata.json")
    if not tf.io.gfile.exists(path):
      raise ValueError(f"HearTaskEvalSet.task_dir: {self.task_dir!r} is not a HEAR task "
                       "(no task_metadata.json)")
    with tf.io.gfile.GFile(path) as f:
      metadata = json.load(f)
    if metadata.get("embedding_type") != "scene":
      raise ValueError(f"HearTaskEvalSet: {self.task_dir} is a "
                       f"{metadata.get('embedding_type')!r} task; only scene tasks are scored")
    rates = sorted(int(n) for n in tf.io.gfile.listdir(self.task_dir) if n.strip("/").isdigit())
    rate = 16000 if 16000 in rates else rates[0]
    rows = []
    for split, hear_names in _hear_splits(metadata, self.task_dir).items():
      for hear in hear_names:
        with tf.io.gfile.GFile(os.path.join(self.task_dir, f"{hear}.json")) as f:
          labels = json.load(f)
        rows += [(os.path.join(self.task_dir, str(rate), hear, name), str(label[0]), split)
                 for name, label in sorted(labels.items())]
    return [_task(metadata.get("task_name", os.path.basename(self.task_dir)), rows,
                  self.task_dir)]


@gin.configurable
class ManifestEvalSet:
  """A CSV manifest with files, label and split columns (relative paths: from its folder)."""

  def __init__(self, manifest=gin.REQUIRED, label_column="label", split_column="split",
               files_column="files"):
    self.manifest = manifest
    self.columns = (files_column, label_column, split_column)

  def describe(self):
    return f"manifest {self.manifest}"

  def tasks(self):
    found, _ = sources.read_manifest(self.manifest, self.columns, "ManifestEvalSet.manifest")
    rows = [(path, row[self.columns[1]].strip(), row[self.columns[2]].strip().lower())
            for _, path, row in found]
    return [_task(self.columns[1], rows, self.manifest)]
