"""The log-mel frontend against an independent numpy implementation."""
import numpy as np
import pytest

from cola_tf import frontend as frontend_lib


def hz_to_mel(f):
  return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def numpy_log_mel(x, sr=16000, win=400, hop=160, nfft=1024, mels=64, lo=60.0, hi=7800.0,
                  floor=1e-6):
  """Straight from the definitions: periodic Hann, zero-padded end, |rfft|^2, HTK mel."""
  n_frames = -(-len(x) // hop)
  padded = np.concatenate([x, np.zeros(n_frames * hop + win - len(x))])
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
  frames = np.stack([padded[i * hop: i * hop + win] * window for i in range(n_frames)])
  power = np.abs(np.fft.rfft(frames, n=nfft)) ** 2
  bin_mel = hz_to_mel(np.linspace(0, sr / 2, nfft // 2 + 1))
  edges = np.linspace(hz_to_mel(lo), hz_to_mel(hi), mels + 2)
  fb = np.zeros((nfft // 2 + 1, mels))
  for m in range(mels):
    left, centre, right = edges[m], edges[m + 1], edges[m + 2]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    fb[:, m] = np.maximum(0.0, np.minimum(rising, falling))
  fb[0, :] = 0.0  # the DC bin carries no mel energy
  return np.log(np.maximum(power @ fb, floor))


def test_matches_numpy_reference():
  rng = np.random.default_rng(0)
  t = np.arange(15360) / 16000
  x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
  fe = frontend_lib.LogMelFrontend()
  got = fe(x).numpy()
  want = numpy_log_mel(x.astype(np.float64))
  assert got.shape == (96, 64)
  np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)


def test_batched_equals_single_and_peak_band():
  fe = frontend_lib.LogMelFrontend()
  t = np.arange(16000) / 16000
  tones = np.stack([np.sin(2 * np.pi * f * t) for f in (300.0, 3000.0)]).astype(np.float32)
  batched = fe(tones).numpy()
  for i in range(2):
    np.testing.assert_allclose(batched[i], fe(tones[i]).numpy(), rtol=1e-5, atol=1e-5)
  # The 3 kHz tone peaks in a higher mel band than the 300 Hz tone.
  assert batched[1].mean(0).argmax() > batched[0].mean(0).argmax() + 20


def test_per_example_normalisation_and_params():
  fe = frontend_lib.LogMelFrontend(normalization="per_example")
  x = np.random.default_rng(1).standard_normal((3, 15360)).astype(np.float32) * [[0.01], [0.1], [1.0]]
  y = fe(x).numpy()
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)
  assert fe.params()["normalization"] == "per_example"
  assert fe.num_frames(15360) == 96


@pytest.mark.parametrize("kwargs", [dict(normalization="global"), dict(upper_edge_hz=9000.0),
                                    dict(fft_length=256)])
def test_bad_parameters_are_errors(kwargs):
  with pytest.raises(ValueError, match="LogMelFrontend"):
    frontend_lib.LogMelFrontend(**kwargs)
