"""What the probe trains on: embeddings of an export (whole clips, scene embeddings, or random
windows for crop augmentation) or the log-mel mean/std baseline, per split, with a cache."""
import time

import numpy as np
import tensorflow as tf

from cola_tf import SAMPLE_RATE
from cola_tf.export import metadata as export_metadata
from cola_tf import frontend as frontend_lib
from cola_tf import logs
from cola_tf.data import audio as audio_lib
from cola_tf.probe.speech_commands import Split

EMBEDDINGS = ("clip", "scene")
BASELINES = ("logmel_stats",)
log = logs.logger("linear_probe")


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


def clip_batches(split, label_index, clip_samples, batch_size=256, shuffle_seed=None):
  """Batches of (waveforms [b, clip_samples], labels [b], clip index [b]) in split order
  (index i < len(files) is files[i], then the in-memory arrays), or shuffled with
  `shuffle_seed`; files that do not decode are skipped, named in the log and counted in the
  summary."""
  def decode(path, label, index):
    waveform, ok = audio_lib.decode_or_flag(tf.io.read_file(path), path,
                                            tf.strings.lower(tf.strings.split(path, ".")[-1]),
                                            SAMPLE_RATE)
    return fit_clip(waveform, clip_samples), label, index, ok

  labels = np.array([label_index[l] for l in split.labels], np.int32)
  order = np.arange(len(split.files), dtype=np.int32)
  if shuffle_seed is not None:  # the file list first: decoded clips are not held to shuffle
    order = np.random.default_rng(shuffle_seed).permutation(order).astype(np.int32)
  files = tf.data.Dataset.from_tensor_slices(
      (tf.constant([split.files[i] for i in order], tf.string), labels[order], order))
  ds = files.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.filter(_is_ok).map(_without_flag)
  if split.arrays:
    arrays = np.stack([fit_clip(a.astype(np.float32), clip_samples).numpy()
                       for a, _ in split.arrays])
    extra = np.array([label_index[l] for _, l in split.arrays], np.int32)
    index = np.arange(len(split.files), len(split), dtype=np.int32)
    ds = ds.concatenate(tf.data.Dataset.from_tensor_slices((arrays, extra, index)))
  if shuffle_seed is not None:  # mixes the in-memory clips into the last few batches
    ds = ds.shuffle(4 * batch_size, seed=shuffle_seed)
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
    self.embedding = embedding
    self.window_samples = int(self.metadata["window_samples"])
    self.name = (f"{self.metadata['encoder']} export, step {self.metadata['training_step']}, "
                 f"{embedding} embedding")

  def clips(self, waveforms):
    return self._embed(waveforms)

  def windows(self, waveforms):
    return self.module.window_embeddings(waveforms)

  def check_training_mode(self):
    """The encoder in training mode (audax's probe) needs whole-clip embeddings and an export
    that has `clip_embeddings_training`."""
    if self.embedding != "clip":
      raise ValueError("--encoder_mode training needs --embedding clip (audax's probe input)")
    if not hasattr(self.module, "clip_embeddings_training"):
      raise ValueError("this export has no clip_embeddings_training function (exported by an "
                       "older cola_tf): export it again for --encoder_mode training")

  def clips_training(self, waveforms):
    """Clip embeddings with the encoder in training mode: batch statistics and drop path, and
    BatchNorm running statistics updated (by the export's momentum)."""
    return self.module.clip_embeddings_training(waveforms)

  def encoder_state(self):
    """The encoder's non-trainable variables (BatchNorm running statistics), as arrays."""
    return [v.numpy() for v in self.module.encoder_state]

  def restore_encoder_state(self, values):
    for v, value in zip(self.module.encoder_state, values):
      v.assign(value)


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


def embed_split(embedder, split, label_index, clip_samples, crop_seed=None, cache=None,
                training_batches=None):
  """(features [n, D] float32, labels [n] int32). With crop_seed, a random window per clip
  (stateless, so a (seed, epoch) pair always gives the same crops). `cache` ({file path:
  feature}, whole-clip features only) is read and filled, so tasks over the same files
  embed each file once. training_batches=(batch_size, seed): whole clips through the encoder
  in training mode, in shuffled batches of batch_size (batch statistics see random clips,
  as in a training step), returned in split order."""
  if training_batches is not None:
    x, y, index = _embed(embedder, split, label_index, clip_samples, None, training_batches)
    order = np.argsort(index, kind="stable")
    return x[order], y[order]
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


def _embed(embedder, split, label_index, clip_samples, crop_seed, training_batches=None):
  features, labels, indices = [], [], []
  started = time.time()
  batch_size, shuffle_seed = training_batches or (256, None)
  batches = clip_batches(split, label_index, clip_samples, batch_size, shuffle_seed)
  for i, (waveforms, y, index) in enumerate(batches):
    if i and i % 40 == 0:  # progress on real-size splits (10k clips a line)
      done = sum(len(l) for l in labels)
      log(f"embedding: {done}/{len(split)} clips, {done / (time.time() - started):.0f} clips/s")
    if training_batches is not None:
      features.append(embedder.clips_training(waveforms).numpy())
    elif crop_seed is None:
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
