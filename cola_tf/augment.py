"""Positive pairs (two random crops of one clip) and batched SpecAugment.

All randomness is stateless and driven by explicit seeds, so a pipeline seeded from gin
gives the same crops and masks on every run, and each example in a batch draws its own.
"""
import gin
import tensorflow as tf

SPEC_AUGMENT_MODES = ("positive", "both", "none")


def random_crop_pair(waveform, crop_samples, seed):
  """Two independent random crops of `crop_samples` from a 1-D waveform.

  Clips shorter than a crop are zero-padded at the end first (both crops are then the
  whole clip). `seed` is a stateless seed: an int tensor of shape [2].
  Returns a [2, crop_samples] float32 tensor: (anchor, positive).
  """
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  length = tf.shape(waveform)[0]
  waveform = tf.pad(waveform, [[0, tf.maximum(crop_samples - length, 0)]])
  max_start = tf.maximum(length - crop_samples, 0)
  starts = tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=max_start + 1,
                                       dtype=tf.int32)
  idx = starts[:, None] + tf.range(crop_samples)[None, :]
  return tf.gather(waveform, idx)


def _band_masks(seed, batch, size, num_masks, max_width):
  """Boolean [batch, size]: per example, `num_masks` bands of width in [0, max_width)."""
  if num_masks == 0 or max_width <= 0:
    return tf.zeros([batch, size], tf.bool)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  widths = tf.random.stateless_uniform([batch, num_masks], seed=seeds[0], minval=0,
                                       maxval=max_width, dtype=tf.int32)
  widths = tf.minimum(widths, size)
  u = tf.random.stateless_uniform([batch, num_masks], seed=seeds[1])
  starts = tf.cast(tf.floor(u * tf.cast(size - widths + 1, tf.float32)), tf.int32)
  pos = tf.range(size)[None, None, :]
  inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
  return tf.reduce_any(inside, axis=1)


@gin.configurable(denylist=["log_mel", "seed"])
def spec_augment(log_mel, seed, num_freq_masks=2, freq_mask_width=10, num_time_masks=2,
                 time_mask_width=10):
  """SpecAugment on a batch [batch, frames, mels]; every example masked independently.

  Mask widths are drawn uniformly from [0, width) (so < 10 by default, as the recipe), and
  masked cells take the example's mean log-mel value (the 'silence' of a normalised input).
  """
  log_mel = tf.convert_to_tensor(log_mel)
  if log_mel.shape.rank != 3:
    raise ValueError(f"spec_augment expects [batch, frames, mels], got shape {log_mel.shape}")
  shape = tf.shape(log_mel)
  batch, frames, mels = shape[0], shape[1], shape[2]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  time_mask = _band_masks(seeds[0], batch, frames, num_time_masks, time_mask_width)
  freq_mask = _band_masks(seeds[1], batch, mels, num_freq_masks, freq_mask_width)
  mask = time_mask[:, :, None] | freq_mask[:, None, :]
  fill = tf.reduce_mean(log_mel, axis=[1, 2], keepdims=True)
  return tf.where(mask, fill, log_mel)


def augment_pair(anchor, positive, seed, mode="positive"):
  """Applies SpecAugment to a batch of pairs according to `mode`."""
  if mode not in SPEC_AUGMENT_MODES:
    raise ValueError(f"spec_augment mode must be one of {SPEC_AUGMENT_MODES}, got {mode!r}")
  seeds = tf.random.experimental.stateless_split(seed, 2)
  if mode == "both":
    anchor = spec_augment(anchor, seeds[0])
  if mode in ("both", "positive"):
    positive = spec_augment(positive, seeds[1])
  return anchor, positive
