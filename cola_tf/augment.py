"""Positive pairs (two random crops of one clip) and batched SpecAugment.

All randomness is stateless and driven by explicit seeds, so a pipeline seeded from gin
gives the same crops and masks on every run, and each example in a batch draws its own.
"""
import gin
import tensorflow as tf

SPEC_AUGMENT_MODES = ("positive", "both", "none")


SHORT_CLIP_PADDINGS = ("centre_two_crops", "end_one_crop")
SPEC_AUGMENT_FILLS = ("zero", "mean")
MASK_DRAWS = ("independent", "audax")


def random_crop_pair(waveform, crop_samples, seed, short_clips="centre_two_crops"):
  """Two independent random crops of `crop_samples` from a 1-D waveform.

  Clips shorter than needed are zero-padded first: 'centre_two_crops' (audax) pads them
  equally on both sides to two crops' length (1.92 s), so short clips give crops that differ
  and hold silence; 'end_one_crop' pads the end to one crop, so both crops are the whole
  clip. `seed` is a stateless seed: an int tensor of shape [2].
  Returns a [2, crop_samples] float32 tensor: (anchor, positive).
  """
  if short_clips not in SHORT_CLIP_PADDINGS:
    raise ValueError(f"short_clips must be one of {SHORT_CLIP_PADDINGS}, got {short_clips!r}")
  waveform = tf.convert_to_tensor(waveform, tf.float32)
  needed = 2 * crop_samples if short_clips == "centre_two_crops" else crop_samples
  missing = tf.maximum(needed - tf.shape(waveform)[0], 0)
  left = missing // 2 if short_clips == "centre_two_crops" else 0
  waveform = tf.pad(waveform, [[left, missing - left]])
  max_start = tf.shape(waveform)[0] - crop_samples
  # Offsets in [0, max_start) as audax's random_crop_signal draws them (0 when the clip is
  # exactly one crop long).
  starts = tf.random.stateless_uniform([2], seed=seed, minval=0,
                                       maxval=tf.maximum(max_start, 1), dtype=tf.int32)
  idx = starts[:, None] + tf.range(crop_samples)[None, :]
  return tf.gather(waveform, idx)


def _band_masks(seed, batch, size, num_masks, max_width, draw):
  """Boolean [batch, size]: per example, `num_masks` bands narrower than `max_width`.

  draw='independent': an integer width in [0, max_width) and, given it, a uniform start.
  draw='audax' (audax's SpecAugment): one uniform u per band gives both, width = u * max_width
  and start = u * (size - width) (its two draws share one key), cells p with
  start <= p < start + width: width and start rise together (wide bands sit near the top
  bins and the last frames), and a band covers up to max_width cells.
  """
  if num_masks == 0 or max_width <= 0:
    return tf.zeros([batch, size], tf.bool)
  pos = tf.range(size)[None, None, :]
  if draw == "audax":
    u = tf.random.stateless_uniform([batch, num_masks], seed=seed)
    width = u * float(max_width)
    start = u * (tf.cast(size, tf.float32) - width)
    pos = tf.cast(pos, tf.float32)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return tf.reduce_any(inside, axis=1)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  widths = tf.random.stateless_uniform([batch, num_masks], seed=seeds[0], minval=0,
                                       maxval=max_width, dtype=tf.int32)
  widths = tf.minimum(widths, size)
  u = tf.random.stateless_uniform([batch, num_masks], seed=seeds[1])
  starts = tf.cast(tf.floor(u * tf.cast(size - widths + 1, tf.float32)), tf.int32)
  inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
  return tf.reduce_any(inside, axis=1)


@gin.configurable(denylist=["log_mel", "seed"])
def spec_augment(log_mel, seed, num_freq_masks=2, freq_mask_width=10, num_time_masks=2,
                 time_mask_width=10, fill="zero", mask_draw="independent"):
  """SpecAugment on a batch [batch, frames, mels]; every example masked independently.

  Mask widths are below `*_mask_width`; `mask_draw` says how width and start are drawn
  ('independent', or 'audax': both from one uniform, the recipe; see `_band_masks`).
  Masked cells become 0 (`fill='zero'`, audax) or the example's mean log-mel value
  (`fill='mean'`: with an unnormalised log-mel, 0 is louder than any real cell).
  """
  if fill not in SPEC_AUGMENT_FILLS:
    raise ValueError(f"spec_augment.fill must be one of {SPEC_AUGMENT_FILLS}, got {fill!r}")
  if mask_draw not in MASK_DRAWS:
    raise ValueError(f"spec_augment.mask_draw must be one of {MASK_DRAWS}, got {mask_draw!r}")
  log_mel = tf.convert_to_tensor(log_mel)
  if log_mel.shape.rank != 3:
    raise ValueError(f"spec_augment expects [batch, frames, mels], got shape {log_mel.shape}")
  shape = tf.shape(log_mel)
  batch, frames, mels = shape[0], shape[1], shape[2]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  time_mask = _band_masks(seeds[0], batch, frames, num_time_masks, time_mask_width, mask_draw)
  freq_mask = _band_masks(seeds[1], batch, mels, num_freq_masks, freq_mask_width, mask_draw)
  mask = time_mask[:, :, None] | freq_mask[:, None, :]
  if fill == "zero":
    return tf.where(mask, tf.zeros_like(log_mel), log_mel)
  return tf.where(mask, tf.reduce_mean(log_mel, axis=[1, 2], keepdims=True), log_mel)


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
