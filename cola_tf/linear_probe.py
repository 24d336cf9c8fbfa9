r"""The seed's linear-probe protocol in TensorFlow: frozen encoder, one Dense layer, AdamW.

  python -m cola_tf.linear_probe --export EXPORT_DIR --data SC_V002_ROOT [--classes 35|12]
      [--task keyword|speaker] [--output DIR] [--embedding clip|scene] [--augment none|crop]
  python -m cola_tf.linear_probe --baseline logmel_stats --data SC_V002_ROOT ...

The defaults are audax's Speech Commands probe (`recipes/cola/configs/supervised/
speechcommandsv2/convnext_tiny_sc_ft.py`, as it ran for the published rows):
* each clip decoded (mono float32, 16 kHz) and centre-cropped or centre-padded with zeros to
  `--clip_seconds` 1.0 s, then fed whole through the export's `clip_embeddings`: waveform
  normalisation, one log-mel of 101 frames, the frozen encoder, pooling (`--embedding
  scene` uses the HEAR scene embedding, the mean over 0.96 s windows, instead);
* one Dense layer on the raw features (`--standardize` first standardises them with the
  train split's mean and std), softmax cross-entropy;
* AdamW, weight decay 0, batch 512, 50 epochs, peak learning rate 1e-3 x batch / 256
  (audax scales every learning rate so; `--reference_batch 0` turns that off), linear
  warmup over 5 epochs then cosine decay to 0;
* the epoch with the best validation accuracy (the later one on a tie) is kept and reported
  on test.
`--augment crop` instead re-embeds a random 0.96 s window of every train clip each epoch
(slower: the encoder runs every epoch); validation and test stay fixed.

Tasks on a Speech Commands v0.02 tree (the real archive or one laid out like it):
* keyword, 35 classes: every word; splits from validation_list.txt / testing_list.txt
  (speaker-disjoint). 12 classes: HEAR's ten words + `_unknown_` + `_silence_` (1 s cuts of
  `_background_noise_`, dealt out to the splits as cola_tf.prepare_speech_commands does).
* speaker: speaker identity (the `<speaker>` of `<speaker>_nohash_<n>.wav`) over speakers
  with at least --min_speaker_clips clips; the clips of each speaker are split 80/10/10 into
  train/valid/test by a hash of their path, so splits share speakers but no clip.

Writes OUTPUT/results.json (top-1, best epoch, per-epoch history, per-class accuracy),
per_class.csv, confusion.csv (rows: true class, columns: predicted) and confusion.png.
`--baseline logmel_stats` probes the mean and std over time of each log-mel bin (the same
waveform normalisation and frontend) instead of an encoder.
"""
import argparse
import collections
import dataclasses
import hashlib
import io
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
import tf_keras

from cola_tf import SAMPLE_RATE
from cola_tf import distribute
from cola_tf import export_metadata
from cola_tf import logs
from cola_tf import files
from cola_tf import frontend as frontend_lib
from cola_tf import optimization
from cola_tf import prepare_speech_commands
from cola_tf.data import audio as audio_lib
from cola_tf.data import sources

TASKS = ("keyword", "speaker")
SPLITS = ("train", "valid", "test")
BASELINES = ("logmel_stats",)
EMBEDDINGS = ("clip", "scene")


@dataclasses.dataclass
class ProbeSettings:
  """How the Dense layer is trained. Defaults: audax's Speech Commands linear probe."""
  epochs: int = 50
  batch_size: int = 512
  learning_rate: float = 1e-3
  reference_batch: int = 256  # peak LR = learning_rate * batch_size / reference_batch; 0: off
  warmup_epochs: float = 5.0
  weight_decay: float = 0.0
  standardize: bool = False
  seed: int = 0

  def peak_learning_rate(self):
    if not self.reference_batch:
      return self.learning_rate
    return self.learning_rate * self.batch_size / self.reference_batch


log = logs.logger("linear_probe")


@dataclasses.dataclass
class Split:
  """Clips of one split: audio files and, optionally, clips already in memory."""
  files: list
  labels: list
  arrays: list = dataclasses.field(default_factory=list)  # [(waveform, label)]

  def __len__(self):
    return len(self.files) + len(self.arrays)


def keyword_task(root, classes=35):
  """(class names, {split: Split}) for Speech Commands keyword spotting."""
  if classes not in (12, 35):
    raise ValueError(f"--classes must be 12 or 35, got {classes}")
  splits = {}
  for split, sc_split in zip(SPLITS, ("train", "validation", "test")):
    source = sources.SpeechCommandsSource(root, sc_split)
    words = source.labels()
    if classes == 12:
      words = [w if w in prepare_speech_commands.TEN_WORDS else "_unknown_" for w in words]
    splits[split] = Split(list(source.files()), list(words))
  if classes == 12:
    wanted = {s: max(1, len(splits[s]) // 11) for s in SPLITS}
    for split, cuts in prepare_speech_commands.silence_cuts(root, wanted).items():
      splits[split].arrays = [(cut, "_silence_") for _, cut in cuts]
  names = sorted({l for s in splits.values() for l in s.labels + [a[1] for a in s.arrays]})
  return names, splits


def speaker_of(path):
  return os.path.basename(path).split("_nohash_")[0]


def split_of_clip(path, fractions=(0.8, 0.1)):
  """train / valid / test by a stable hash of the clip's word/file name."""
  rel = "/".join(path.replace(os.sep, "/").split("/")[-2:])
  u = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) / 16 ** 8
  return "train" if u < fractions[0] else "valid" if u < sum(fractions) else "test"


def speaker_task(root, min_clips=10):
  """(speaker names, {split: Split}): speaker identification over every word folder."""
  source = sources.SpeechCommandsSource(root, "all")
  by_speaker = collections.defaultdict(list)
  for path in source.files():
    by_speaker[speaker_of(path)].append(path)
  speakers = sorted(s for s, files in by_speaker.items() if len(files) >= min_clips)
  if len(speakers) < 2:
    raise ValueError(f"--data {root!r}: the speaker task needs 2+ speakers with "
                     f">= {min_clips} clips (--min_speaker_clips), found {len(speakers)}")
  splits = {s: Split([], []) for s in SPLITS}
  for speaker in speakers:
    for path in by_speaker[speaker]:
      split = splits[split_of_clip(path)]
      split.files.append(path)
      split.labels.append(speaker)
  for name, split in splits.items():
    if not split.files:
      raise ValueError(f"--data {root!r}: the speaker task's {name} split is empty")
  return speakers, splits


def load_task(task, root, classes=35, min_speaker_clips=10):
  if not tf.io.gfile.isdir(root):
    raise ValueError(f"--data {root!r} is not a directory")
  if task == "keyword":
    return keyword_task(root, classes)
  if task == "speaker":
    return speaker_task(root, min_speaker_clips)
  raise ValueError(f"--task must be one of {TASKS}, got {task!r}")


def fit_clip(waveform, samples):
  """Centre crop or centred zero padding to `samples` (audax's center_crop / pad_waveform)."""
  length = tf.shape(waveform)[0]
  start = tf.maximum(length // 2 - samples // 2, 0)
  waveform = waveform[start:start + samples]
  missing = samples - tf.shape(waveform)[0]
  return tf.pad(waveform, [[missing // 2, missing - missing // 2]])


def _is_ok(waveform, label, index, ok):  # pylint: disable=unused-argument
  return ok


def _without_flag(waveform, label, index, ok):  # pylint: disable=unused-argument
  return waveform, label, index


def clip_batches(split, label_index, clip_samples, batch_size=256):
  """Batches of (waveforms [b, clip_samples], labels [b], clip index [b]) in split order
  (index i < len(files) is files[i], then the in-memory arrays); files that do not decode are
  skipped, named in the log and counted in the summary."""
  def decode(path, label, index):
    waveform, ok = audio_lib.decode_or_flag(tf.io.read_file(path), path,
                                            tf.strings.lower(tf.strings.split(path, ".")[-1]),
                                            SAMPLE_RATE)
    return fit_clip(waveform, clip_samples), label, index, ok

  labels = np.array([label_index[l] for l in split.labels], np.int32)
  files = tf.data.Dataset.from_tensor_slices(
      (tf.constant(split.files, tf.string), labels, np.arange(len(split.files), dtype=np.int32)))
  ds = files.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.filter(_is_ok).map(_without_flag)
  if split.arrays:
    arrays = np.stack([fit_clip(a.astype(np.float32), clip_samples).numpy()
                       for a, _ in split.arrays])
    extra = np.array([label_index[l] for _, l in split.arrays], np.int32)
    index = np.arange(len(split.files), len(split), dtype=np.int32)
    ds = ds.concatenate(tf.data.Dataset.from_tensor_slices((arrays, extra, index)))
  return ds.batch(batch_size).prefetch(2)


class ExportEmbedder:
  """Embeddings from a cola_tf export (SavedModel): whole clips or scene embeddings, or
  single windows (crop augmentation)."""

  def __init__(self, path, embedding="clip"):
    if embedding not in EMBEDDINGS:
      raise ValueError(f"--embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    self.metadata = export_metadata.read(path, who="--export")
    self.module = tf.saved_model.load(path)
    if not hasattr(self.module, f"{embedding}_embeddings"):
      raise ValueError(f"--export {path!r} has no {embedding}_embeddings function (exported "
                       "by an older cola_tf: export it again)")
    self._embed = getattr(self.module, f"{embedding}_embeddings")
    self.window_samples = int(self.metadata["window_samples"])
    self.name = (f"{self.metadata['encoder']} export, step {self.metadata['training_step']}, "
                 f"{embedding} embedding")

  def clips(self, waveforms):
    return self._embed(waveforms)

  def windows(self, waveforms):
    return self.module.window_embeddings(waveforms)


class LogMelStatsEmbedder:
  """Baseline: mean and std over time of each log-mel bin of the one frontend (waveform
  normalisation included)."""
  name = "log-mel mean/std baseline"
  window_samples = None

  def __init__(self):
    self.frontend = frontend_lib.LogMelFrontend()
    self._clips = tf.function(self._stats)

  def _stats(self, waveforms):
    mean, var = tf.nn.moments(self.frontend(self.frontend.normalize_clip(waveforms)), axes=[1])
    return tf.concat([mean, tf.sqrt(var + 1e-8)], axis=-1)

  def clips(self, waveforms):
    return self._clips(waveforms)


def embed_split(embedder, split, label_index, clip_samples, crop_seed=None, cache=None):
  """(features [n, D] float32, labels [n] int32). With crop_seed, a random window per clip
  (stateless, so a (seed, epoch) pair always gives the same crops). `cache` ({file path:
  feature}, whole-clip features only) is read and filled, so tasks over the same files
  embed each file once."""
  if cache is not None and crop_seed is None:
    todo = [i for i, path in enumerate(split.files) if path not in cache]
    missing = Split([split.files[i] for i in todo], [split.labels[i] for i in todo])
    if missing.files:
      x, _, index = _embed(embedder, missing, label_index, clip_samples, None)
      cache.update((missing.files[i], feature) for feature, i in zip(x, index))
    rows = [(cache[p], label_index[l]) for p, l in zip(split.files, split.labels) if p in cache]
    if split.arrays:
      x, y, _ = _embed(embedder, Split([], [], split.arrays), label_index, clip_samples, None)
      rows += list(zip(x, y))
    if not rows:
      raise ValueError("no clip of the split could be decoded")
    return (np.stack([r[0] for r in rows]).astype(np.float32),
            np.array([r[1] for r in rows], np.int32))
  x, y, _ = _embed(embedder, split, label_index, clip_samples, crop_seed)
  return x, y


def _embed(embedder, split, label_index, clip_samples, crop_seed):
  features, labels, indices = [], [], []
  started = time.time()
  for i, (waveforms, y, index) in enumerate(clip_batches(split, label_index, clip_samples)):
    if i and i % 40 == 0:  # progress on real-size splits (10k clips a line)
      done = sum(len(l) for l in labels)
      log(f"embedding: {done}/{len(split)} clips, {done / (time.time() - started):.0f} clips/s")
    if crop_seed is None:
      features.append(embedder.clips(waveforms).numpy())
    else:
      w = embedder.window_samples
      n = tf.shape(waveforms)[0]
      starts = tf.random.stateless_uniform([n], seed=[crop_seed, i], maxval=clip_samples - w + 1,
                                           dtype=tf.int32)
      windows = tf.gather(waveforms, starts[:, None] + tf.range(w)[None, :], batch_dims=1)
      features.append(embedder.windows(windows).numpy())
    labels.append(y.numpy())
    indices.append(index.numpy())
  if not features:
    raise ValueError("no clip of the split could be decoded")
  return (np.concatenate(features).astype(np.float32), np.concatenate(labels),
          np.concatenate(indices))


def fit_probe(data, num_classes, settings=None, train_features_for_epoch=None, verbose=True):
  """Trains Dense(num_classes) on data['train'], keeps the best epoch on data['valid'].

  data: {split: (features [n, D], labels [n])}; settings: a ProbeSettings (default: the
  seed's protocol). train_features_for_epoch(epoch), if given, returns fresh train features
  each epoch (augmentation). Returns a dict with best_epoch, valid_accuracy, test_accuracy,
  test predictions and the per-epoch history.
  """
  settings = settings or ProbeSettings()
  if not 0 <= settings.warmup_epochs < settings.epochs:
    raise ValueError(f"--warmup_epochs ({settings.warmup_epochs}) must be in [0, --epochs "
                     f"({settings.epochs}))")
  x_train, y_train = data["train"]
  mean, std = np.zeros(x_train.shape[1], np.float32), np.ones(x_train.shape[1], np.float32)
  if settings.standardize:
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # constant (e.g. dead) features: centred only

  def standardise(x):
    return ((x - mean) / std).astype(np.float32)

  tf_keras.utils.set_random_seed(settings.seed)
  layer = tf_keras.layers.Dense(num_classes)
  layer.build((None, x_train.shape[1]))
  num_batches = max(1, len(x_train) // settings.batch_size)  # the rest wait, as drop_remainder
  optimizer, schedule = optimization.build_adamw(
      settings.epochs * num_batches, num_batches, learning_rate=settings.peak_learning_rate(),
      batch_size_scaling=None, warmup_epochs=settings.warmup_epochs, warmup_steps=None,
      weight_decay=settings.weight_decay, end_learning_rate_fraction=0.0,
      gradient_clip_norm=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, no_weight_decay=())
  loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def train_epoch(x, y, batches):
    """One epoch in a single graph call (Python overhead per step would dominate).
    batches: [num_batches, batch] row indices."""
    total = tf.constant(0.0)
    for i in tf.range(tf.shape(batches)[0]):
      with tf.GradientTape() as tape:
        loss = loss_fn(tf.gather(y, batches[i]), layer(tf.gather(x, batches[i])))
      optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables),
                                    layer.trainable_variables))
      total += loss
    return total / tf.cast(tf.shape(batches)[0], tf.float32)

  def predict(x):
    return np.argmax(layer(standardise(x)).numpy(), axis=-1)

  rng = np.random.default_rng(settings.seed)
  best = (-1.0, 0, None)
  history = []
  epochs = settings.epochs
  for epoch in range(1, epochs + 1):
    if train_features_for_epoch is not None:
      x_train, y_train = train_features_for_epoch(epoch)
    x = standardise(x_train)
    per_batch = len(x) // num_batches
    batches = rng.permutation(len(x))[:num_batches * per_batch]
    loss = float(train_epoch(x, y_train, batches.reshape(num_batches, per_batch)))
    valid_acc = float(np.mean(predict(data["valid"][0]) == data["valid"][1]))
    history.append({"epoch": epoch, "train_loss": loss, "valid_accuracy": valid_acc,
                    "learning_rate": float(schedule(epoch * num_batches - 1))})
    if valid_acc >= best[0]:  # ties: the later epoch, as audax's save_best_checkpoint
      best = (valid_acc, epoch, [v.numpy() for v in layer.weights])
    if verbose and (epoch % 10 == 0 or epoch == epochs):
      log(f"epoch {epoch}/{epochs}: train loss {loss:.4f}, valid accuracy "
          f"{valid_acc:.4f} (best {best[0]:.4f} at epoch {best[1]})")
  layer.set_weights(best[2])
  predictions = predict(data["test"][0])
  return {"best_epoch": best[1], "valid_accuracy": best[0],
          "test_accuracy": float(np.mean(predictions == data["test"][1])),
          "test_predictions": predictions, "test_labels": data["test"][1], "history": history}


def confusion_matrix(labels, predictions, num_classes):
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def write_report(output, class_names, result, description):
  """results.json, per_class.csv, confusion.csv and confusion.png in `output` (atomic each;
  any tf.io.gfile filesystem, e.g. gs://)."""
  tf.io.gfile.makedirs(output)
  matrix = confusion_matrix(result["test_labels"], result["test_predictions"], len(class_names))
  totals = matrix.sum(axis=1)
  per_class = {name: (float(matrix[i, i] / totals[i]) if totals[i] else None)
               for i, name in enumerate(class_names)}

  def atomic(name, content):
    files.atomic_write(os.path.join(output, name), content)

  summary = {k: v for k, v in result.items() if k not in ("test_predictions", "test_labels")}
  summary.update(description, classes=list(class_names), per_class_accuracy=per_class)
  atomic("results.json", json.dumps(summary, indent=1))
  atomic("per_class.csv", "class,test_clips,test_accuracy\n" + "".join(
      f"{n},{totals[i]},{'' if per_class[n] is None else f'{per_class[n]:.4f}'}\n"
      for i, n in enumerate(class_names)))
  atomic("confusion.csv", "true\\predicted," + ",".join(class_names) + "\n" + "".join(
      f"{n}," + ",".join(str(v) for v in matrix[i]) + "\n" for i, n in enumerate(class_names)))

  def png():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    size = max(5.0, 0.22 * len(class_names))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    rows = matrix / np.maximum(totals[:, None], 1)
    image = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    if len(class_names) <= 60:
      ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
      ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{description['task']}: test top-1 {result['test_accuracy']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()

  atomic("confusion.png", png())
  return per_class


def probe(embedder, task, data_root, classes=35, settings=None, augment="none",
          clip_seconds=1.0, min_speaker_clips=10, output=None, feature_cache=None,
          verbose=True):
  """Runs the whole protocol (settings: a ProbeSettings, default the seed's). `feature_cache`
  ({path: feature}, filled here) lets several tasks over the same files share one
  embedding pass."""
  settings = settings or ProbeSettings()
  if augment not in ("none", "crop"):
    raise ValueError(f"--augment must be none or crop, got {augment!r}")
  if augment == "crop" and getattr(embedder, "window_samples", None) is None:
    raise ValueError("--augment crop needs an encoder export (--export), not a baseline")
  class_names, splits = load_task(task, data_root, classes, min_speaker_clips)
  label_index = {n: i for i, n in enumerate(class_names)}
  clip_samples = int(round(clip_seconds * SAMPLE_RATE))
  started = time.time()
  audio_lib.BAD_FILES.reset()
  features = {s: embed_split(embedder, splits[s], label_index, clip_samples,
                            cache=feature_cache) for s in SPLITS}
  if verbose:
    log(f"embedded {sum(len(f[1]) for f in features.values())} clips with {embedder.name} "
        f"({features['train'][0].shape[1]}-d) in {time.time() - started:.1f} s; "
        f"{audio_lib.BAD_FILES.summary()}")
  fresh = None
  if augment == "crop":
    def fresh(epoch):
      return embed_split(embedder, splits["train"], label_index, clip_samples,
                         crop_seed=settings.seed * 100003 + epoch)
  result = fit_probe(features, len(class_names), settings, fresh, verbose)
  description = {"task": task if task == "speaker" else f"keyword ({len(class_names)} classes)",
                 "embedder": embedder.name,
                 "data": files.absolute(data_root),
                 "clips": {s: int(len(features[s][1])) for s in SPLITS},
                 **dataclasses.asdict(settings),
                 "peak_learning_rate": settings.peak_learning_rate(),
                 "clip_seconds": clip_seconds, "augment": augment}
  result["description"] = description
  if output:
    result["per_class_accuracy"] = write_report(output, class_names, result, description)
  if verbose:
    log(f"{description['task']}: test top-1 accuracy {result['test_accuracy']:.4f} (best "
        f"epoch {result['best_epoch']}, valid {result['valid_accuracy']:.4f}; "
        f"{len(class_names)} classes, chance {1 / len(class_names):.4f})"
        + (f"; report in {output}" if output else ""))
  return result


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument("--export", help="a cola_tf export (SavedModel folder)")
  what.add_argument("--baseline", choices=BASELINES, help="probe a baseline instead")
  p.add_argument("--data", required=True, help="Speech Commands v0.02 root")
  p.add_argument("--task", default="keyword", choices=TASKS)
  p.add_argument("--classes", type=int, default=35, choices=[12, 35],
                 help="keyword task: 35 words (the seed's protocol) or HEAR's 12")
  p.add_argument("--output", help="report folder (default EXPORT/linear_probe-TASK)")
  p.add_argument("--embedding", default="clip", choices=EMBEDDINGS,
                 help="clip: the whole clip as one input (the seed's); scene: HEAR's mean over "
                      "0.96 s windows")
  defaults = ProbeSettings()
  p.add_argument("--epochs", type=int, default=defaults.epochs)
  p.add_argument("--batch_size", type=int, default=defaults.batch_size)
  p.add_argument("--learning_rate", type=float, default=defaults.learning_rate,
                 help="base LR; the peak is LR x batch / --reference_batch")
  p.add_argument("--reference_batch", type=int, default=defaults.reference_batch,
                 help="0: the learning rate is the peak as given")
  p.add_argument("--warmup_epochs", type=float, default=defaults.warmup_epochs)
  p.add_argument("--weight_decay", type=float, default=defaults.weight_decay)
  p.add_argument("--standardize", action="store_true",
                 help="standardise features with the train split's mean and std first")
  p.add_argument("--seed", type=int, default=defaults.seed)
  p.add_argument("--augment", default="none", choices=["none", "crop"])
  p.add_argument("--clip_seconds", type=float, default=1.0)
  p.add_argument("--min_speaker_clips", type=int, default=10)
  a = p.parse_args(argv)
  suffix = f"{a.task}{a.classes}" if a.task == "keyword" else a.task
  output = a.output or (os.path.join(a.export, f"linear_probe-{suffix}") if a.export
                        else f"linear_probe-{a.baseline}-{suffix}")
  settings = ProbeSettings(a.epochs, a.batch_size, a.learning_rate, a.reference_batch,
                           a.warmup_epochs, a.weight_decay, a.standardize, a.seed)
  try:
    if settings.epochs < 1 or settings.batch_size < 1:
      raise ValueError(f"--epochs and --batch_size must be >= 1, got {settings.epochs}, "
                       f"{settings.batch_size}")
    embedder = (ExportEmbedder(a.export, a.embedding) if a.export
                else LogMelStatsEmbedder())
    probe(embedder, a.task, a.data, a.classes, settings, a.augment, a.clip_seconds,
          a.min_speaker_clips, output)
  except ValueError as e:
    log(f"error: {e}", error=True)
    return 2
  return 0


if __name__ == "__main__":
  distribute.initialise_devices_quietly()
  sys.exit(main())
