"""Random crop pairs and batched SpecAugment."""
import numpy as np
import pytest
import tensorflow as tf

from cola_tf import augment


def _offset(waveform, crop):
  hits = [i for i in range(len(waveform) - len(crop) + 1)
          if np.array_equal(waveform[i:i + len(crop)], crop)]
  assert len(hits) == 1
  return hits[0]


def test_crops_are_windows_of_the_clip_and_independent():
  wave = np.arange(5000, dtype=np.float32)
  starts = []
  for s in range(20):
    pair = augment.random_crop_pair(wave, 1000, tf.constant([7, s])).numpy()
    assert pair.shape == (2, 1000)
    starts.append((_offset(wave, pair[0]), _offset(wave, pair[1])))
  starts = np.array(starts)
  assert starts.min() >= 0 and starts.max() <= 4000
  assert (starts[:, 0] != starts[:, 1]).mean() > 0.9  # two crops drawn independently
  assert len(set(starts[:, 0])) > 15  # different per seed
  again = augment.random_crop_pair(wave, 1000, tf.constant([7, 3])).numpy()
  np.testing.assert_array_equal(again[0], wave[starts[3, 0]:starts[3, 0] + 1000])


def test_short_clip_end_one_crop_is_the_whole_clip():
  wave = np.ones(300, np.float32)
  pair = augment.random_crop_pair(wave, 1000, tf.constant([0, 0]), "end_one_crop").numpy()
  for crop in pair:
    np.testing.assert_array_equal(crop[:300], 1.0)
    np.testing.assert_array_equal(crop[300:], 0.0)


def test_short_clip_centre_two_crops_as_audax():
  """audax pads a clip shorter than 2 crops equally on both sides to 2 crops, then crops."""
  wave = np.arange(1, 1501, dtype=np.float32)  # 1.5 crops of 1000
  padded = np.concatenate([np.zeros(250), wave, np.zeros(250)]).astype(np.float32)
  offsets = set()
  for s in range(40):
    pair = augment.random_crop_pair(wave, 1000, tf.constant([1, s])).numpy()
    for crop in pair:
      offsets.add(_offset(padded, crop) if crop.any() else None)
  assert None not in offsets and min(offsets) >= 0 and max(offsets) <= 1000
  assert len(offsets) > 30  # crops differ: the pair is not the same padded clip twice
  with pytest.raises(ValueError, match="short_clips"):
    augment.random_crop_pair(wave, 1000, tf.constant([0, 0]), "loop")


def test_spec_augment_masks_each_example_independently_with_narrow_bands():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((64, 96, 64)).astype(np.float32) + 5.0
  y = augment.spec_augment(x, tf.constant([1, 2]), fill="mean").numpy()
  zero = augment.spec_augment(x, tf.constant([1, 2])).numpy()  # the recipe's fill
  np.testing.assert_array_equal(zero[y != x], 0.0)
  np.testing.assert_array_equal(zero[y == x], x[y == x])
  patterns = set()
  for i in range(64):
    changed = y[i] != x[i]
    fill = x[i].mean()
    np.testing.assert_allclose(y[i][changed], fill, rtol=1e-6)
    full_time = np.where(changed.all(axis=1))[0]   # masked frames (whole rows)
    full_freq = np.where(changed.all(axis=0))[0]   # masked mel bins (whole columns)
    # Every changed cell lies in a masked frame or a masked bin.
    assert np.all(changed == (np.isin(np.arange(96), full_time)[:, None]
                              | np.isin(np.arange(64), full_freq)[None, :]))
    assert len(full_time) <= 18 and len(full_freq) <= 18  # 2 masks of width < 10
    patterns.add((tuple(full_time), tuple(full_freq)))
  assert len(patterns) > 50


def test_crop_offsets_are_drawn_from_zero_to_below_the_last_as_audax():
  """audax's random_crop_signal: offset in [0, len - crop), the whole clip when it is one
  crop long. A clip one sample longer than a crop therefore always starts at 0."""
  crop = 160
  longer = np.arange(crop + 1, dtype=np.float32)
  for seed in range(20):
    pair = augment.random_crop_pair(longer, crop, tf.constant([seed, 1]), "end_one_crop").numpy()
    np.testing.assert_array_equal(pair, np.stack([longer[:crop]] * 2))
  exact = np.arange(crop, dtype=np.float32)
  np.testing.assert_array_equal(
      augment.random_crop_pair(exact, crop, tf.constant([0, 1]), "end_one_crop").numpy(),
      np.stack([exact] * 2))
  starts = {int(augment.random_crop_pair(np.arange(crop + 3, dtype=np.float32), crop,
                                         tf.constant([s, 2]), "end_one_crop").numpy()[0, 0])
            for s in range(60)}
  assert starts == {0, 1, 2}


def _bands(draw, examples=2000, mels=64, width=10):
  """(first masked bin, masked bins) of one frequency mask per example."""
  x = np.zeros((examples, 8, mels), np.float32) + np.arange(1, mels + 1, dtype=np.float32)
  y = augment.spec_augment(x, tf.constant([3, 4]), num_time_masks=0, num_freq_masks=1,
                           freq_mask_width=width, mask_draw=draw).numpy()
  masked = (y != x).all(axis=1)
  return [(int(np.argmax(m)) if m.any() else -1, int(m.sum())) for m in masked]


def test_spec_augment_audax_draw_is_audax_formula():
  """audax's SpecAugment (audax/transforms/spec_augment.py): one uniform u per mask gives
  width u * F and start u * (size - width), cells start <= p < start + width. Every band
  drawn must be one that formula makes for some u (computed here on a fine grid of u), and
  width and start rise together, up to F = 10 cells."""
  size, width = 64, 10
  u = np.linspace(0.0, 1.0, 400001, endpoint=False)
  start, stop = u * (size - u * width), u * (size - u * width) + u * width
  first = np.ceil(start).astype(int)
  count = np.ceil(stop).astype(int) - first
  possible = {(f if c > 0 else -1, max(int(c), 0)) for f, c in zip(first, count)}
  bands = _bands("audax", mels=size, width=width)
  assert set(bands) <= possible
  drawn = np.array([b for b in bands if b[1] > 0])
  assert max(drawn[:, 1]) == width
  assert np.corrcoef(drawn[:, 0], drawn[:, 1])[0, 1] > 0.9
  independent = np.array([b for b in _bands("independent", mels=size, width=width) if b[1] > 0])
  assert not set(map(tuple, independent)) <= possible  # the check can tell the two apart
  assert abs(np.corrcoef(independent[:, 0], independent[:, 1])[0, 1]) < 0.3


def test_spec_augment_independent_draw_width_bound_and_rank_check():
  widths = [c for _, c in _bands("independent", examples=200)]
  assert max(widths) == 9 and min(widths) == 0
  x = np.zeros((2, 96, 64), np.float32)
  with pytest.raises(ValueError, match=r"\[batch, frames, mels\]"):
    augment.spec_augment(x[0], tf.constant([0, 0]))
  with pytest.raises(ValueError, match="spec_augment.fill"):
    augment.spec_augment(x, tf.constant([0, 0]), fill="noise")
  with pytest.raises(ValueError, match="spec_augment.mask_draw"):
    augment.spec_augment(x, tf.constant([0, 0]), mask_draw="torch")


@pytest.mark.parametrize("mode,anchor_changed,positive_changed",
                         [("positive", False, True), ("both", True, True), ("none", False, False)])
def test_augment_pair_modes(mode, anchor_changed, positive_changed):
  x = np.random.default_rng(1).standard_normal((16, 96, 64)).astype(np.float32)
  a, p = (np.asarray(t) for t in augment.augment_pair(x, x, tf.constant([5, 6]), mode))
  assert (not np.array_equal(a, x)) == anchor_changed
  assert (not np.array_equal(p, x)) == positive_changed


def test_unknown_mode_is_an_error():
  with pytest.raises(ValueError, match="positive"):
    augment.augment_pair(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), tf.constant([0, 0]), "anchor")
