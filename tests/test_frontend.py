"""The log-mel frontend against an independent numpy implementation of audax's (and the
other) framing and filterbanks."""
import numpy as np
import pytest

from cola_tf import frontend as frontend_lib


def hz_to_mel(f):
  return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
  return 700.0 * np.expm1(np.asarray(m, np.float64) / 1127.0)


def filterbank(sr, nfft, mels, lo, hi, slopes_in):
  """HTK mel triangles, one filter at a time: rising and falling edges linear in Hz
  (torchaudio / audax) or in mel (TensorFlow, google-research)."""
  bin_hz = np.arange(nfft // 2 + 1) * (sr / nfft)
  edges = np.linspace(hz_to_mel(lo), hz_to_mel(hi), mels + 2)
  fb = np.zeros((nfft // 2 + 1, mels))
  for m in range(mels):
    left, centre, right = edges[m], edges[m + 1], edges[m + 2]
    if slopes_in == "hz":
      left, centre, right = mel_to_hz([left, centre, right])
      at = bin_hz
    else:
      at = hz_to_mel(bin_hz)
    rising = (at - left) / (centre - left)
    falling = (right - at) / (right - centre)
    fb[:, m] = np.maximum(0.0, np.minimum(rising, falling))
  if slopes_in == "mel":
    fb[0, :] = 0.0  # TensorFlow gives the DC bin no mel energy
  return fb


def frames_of(x, framing, win=400, hop=160, nfft=1024):
  """[frames, win] samples each frame sees, from the definitions:
  'audax' (audax.core.stft, center=True): reflect-pad nfft // 2 at both ends, a win-sample
  frame every hop from the padded start ('VALID' patches); the FFT zero-pads its end.
  'centred' (torch center=True): the same padding, the window in the middle of the nfft
  frame. 'end': no front padding, zeros at the end."""
  if framing == "end":
    n_frames = -(-len(x) // hop)
    padded = np.concatenate([x, np.zeros(n_frames * hop + win - len(x))])
    return np.stack([padded[i * hop:i * hop + win] for i in range(n_frames)])
  padded = np.pad(x, nfft // 2, mode="reflect")
  if framing == "audax":
    n_frames = 1 + (len(padded) - win) // hop
    return np.stack([padded[i * hop:i * hop + win] for i in range(n_frames)])
  n_frames = 1 + (len(padded) - nfft) // hop
  start = (nfft - win) // 2
  return np.stack([padded[i * hop + start:i * hop + start + win] for i in range(n_frames)])


def numpy_log_mel(x, sr=16000, win=400, hop=160, nfft=1024, mels=64, lo=60.0, hi=7800.0,
                  floor=1e-8, framing="audax", symmetric=True, slopes_in="hz"):
  """Straight from the definitions: Hann (symmetric as np.hanning, or periodic), the
  framing of `frames_of`, |rfft|^2, HTK mel (`filterbank`), log(max(., floor))."""
  window = (np.hanning(win) if symmetric
            else 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win))
  power = np.abs(np.fft.rfft(frames_of(x, framing, win, hop, nfft) * window, n=nfft)) ** 2
  return np.log(np.maximum(power @ filterbank(sr, nfft, mels, lo, hi, slopes_in), floor))


@pytest.mark.parametrize("padding,window,bank,frames", [
    ("fft_reflect", "hann_symmetric", "hz_triangles", 100),  # the recipe (audax)
    ("centre_reflect", "hann_symmetric", "mel_triangles", 97),  # torch center=True
    ("end_zero", "hann_periodic", "mel_triangles", 96)])
def test_matches_numpy_reference(padding, window, bank, frames):
  rng = np.random.default_rng(0)
  t = np.arange(15360) / 16000
  x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
  reference = dict(framing={"fft_reflect": "audax", "centre_reflect": "centred",
                            "end_zero": "end"}[padding],
                   symmetric=window == "hann_symmetric", slopes_in=bank[:-len("_triangles")])
  fe = frontend_lib.LogMelFrontend(waveform_normalization="none", padding=padding,
                                   window=window, mel_filterbank=bank)
  got = fe(x).numpy()
  want = numpy_log_mel(x.astype(np.float64), **reference)
  assert got.shape == (frames, 64) and fe.num_frames(15360) == frames
  np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)
  # The recipe's waveform normalisation: unit L2 norm of the window, then the same log-mel.
  fe_l2 = frontend_lib.LogMelFrontend(padding=padding, window=window, mel_filterbank=bank)
  want_l2 = numpy_log_mel(x.astype(np.float64) / np.linalg.norm(x.astype(np.float64)),
                          **reference)
  np.testing.assert_allclose(fe_l2(x).numpy(), want_l2, atol=2e-3, rtol=1e-3)


def test_recipe_framing_is_audax_frame_by_frame():
  """audax frame t sees samples [160 t - 512, 160 t - 112) (reflected before 0): an impulse
  at sample s lights exactly the frames whose Hann window is non-zero there, and the
  reflection of an impulse near the start lights frames before it. 100 frames per 0.96 s
  crop, 104 per 1 s clip (audax's input_shape (100, 64, 1))."""
  fe = frontend_lib.LogMelFrontend(waveform_normalization="none")
  assert (fe.num_frames(15360), fe.num_frames(16000)) == (100, 104)
  for s in (100, 5000, 15300):
    x = np.zeros(15360, np.float32)
    x[s] = 1.0
    lit = set(np.flatnonzero(fe(x).numpy().max(axis=1) > np.log(1e-8) + 1))
    seen = {s, -s, 2 * (15360 - 1) - s}  # the sample and its reflections
    want = {t for t in range(100) for p in seen if 0 < p - (160 * t - 512) < 399}
    assert lit == want, (s, sorted(lit ^ want))


def test_filterbanks_are_audax_and_tensorflow_and_differ_by_a_measured_amount():
  """audax's Hz-slope triangles vs TensorFlow's mel-slope ones: the same band edges, so
  the log-mels differ only a little (a few hundredths on loud bins of white noise)."""
  ours = frontend_lib.hz_triangle_filterbank(64, 1024, 16000, 60.0, 7800.0)
  np.testing.assert_allclose(ours, filterbank(16000, 1024, 64, 60.0, 7800.0, "hz"), atol=1e-5)
  x = np.random.default_rng(4).standard_normal(16000).astype(np.float32)
  hz, mel = (frontend_lib.LogMelFrontend(mel_filterbank=b)(x).numpy()
             for b in frontend_lib.MEL_FILTERBANKS)
  gap = np.abs(hz - mel)
  # The table's figures (docs/recipe.md): median 0.002, at most 0.01 (measured 0.00215, 0.0104).
  assert 0.0015 < np.median(gap) < 0.003 and 0.005 < gap.max() < 0.015, (np.median(gap), gap.max())


@pytest.mark.parametrize("mode", ["l2_window", "l2_clip"])
def test_l2_normalisation_removes_gain(mode):
  """A window and the same window 20 dB quieter (or 30 dB louder) give the same features."""
  fe = frontend_lib.LogMelFrontend(waveform_normalization=mode)
  x = np.random.default_rng(2).uniform(-0.5, 0.5, (2, 15360)).astype(np.float32)
  ref = fe(fe.normalize_clip(x)).numpy()
  for gain in (0.1, 31.6):
    np.testing.assert_allclose(fe(fe.normalize_clip(gain * x)).numpy(), ref, atol=1e-4)
  plain = frontend_lib.LogMelFrontend(waveform_normalization="none")
  assert np.abs(plain(0.1 * x).numpy() - plain(x).numpy()).min() > 4.0  # 2 ln 10 = 4.6
  silence = fe(np.zeros((1, 15360), np.float32)).numpy()
  np.testing.assert_allclose(silence, np.log(1e-8), rtol=1e-6)  # zeros stay zeros, no NaN


def test_noise_is_added_after_normalisation():
  fe = frontend_lib.LogMelFrontend()
  x = np.random.default_rng(3).uniform(-0.5, 0.5, (1, 15360)).astype(np.float32)
  noise = np.full_like(x, 0.01)
  want = fe.normalize(fe.log_mel(frontend_lib.l2_normalize(x) + noise)).numpy()
  np.testing.assert_allclose(fe(x, noise).numpy(), want, rtol=1e-6)
  np.testing.assert_allclose(fe(100 * x, noise).numpy(), want, atol=1e-4)


def test_batched_equals_single_and_peak_band():
  fe = frontend_lib.LogMelFrontend()
  t = np.arange(16000) / 16000
  tones = np.stack([np.sin(2 * np.pi * f * t) for f in (300.0, 3000.0)]).astype(np.float32)
  batched = fe(tones).numpy()
  for i in range(2):
    np.testing.assert_allclose(batched[i], fe(tones[i]).numpy(), rtol=1e-5, atol=1e-5)
  # The 3 kHz tone peaks in a higher mel band than the 300 Hz tone.
  assert batched[1].mean(0).argmax() > batched[0].mean(0).argmax() + 20


def test_per_window_normalisation_and_params(capsys):
  fe = frontend_lib.LogMelFrontend(normalization="per_window", waveform_normalization="none")
  x = np.random.default_rng(1).standard_normal((3, 15360)).astype(np.float32) * [[0.01], [0.1], [1.0]]
  y = fe(x).numpy()
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)
  assert fe.params()["normalization"] == "per_window"
  assert fe.params()["waveform_normalization"] == "none"
  # The old value name (earlier runs' operative configs hold it) reads as the new one.
  old = frontend_lib.LogMelFrontend(normalization="per_example", waveform_normalization="none")
  assert old.normalization == "per_window" and np.array_equal(old(x).numpy(), y)
  assert "'per_example' is now 'per_window'" in capsys.readouterr().out
  assert fe.num_frames(15360) == 100 and fe.num_frames(16000) == 104


@pytest.mark.parametrize("kwargs", [dict(normalization="global"), dict(upper_edge_hz=9000.0),
                                    dict(fft_length=256), dict(waveform_normalization="peak"),
                                    dict(window="hamming"), dict(padding="zero"),
                                    dict(mel_filterbank="slaney")])
def test_bad_parameters_are_errors(kwargs):
  with pytest.raises(ValueError, match="LogMelFrontend"):
    frontend_lib.LogMelFrontend(**kwargs)


@pytest.mark.parametrize("padding,lo,hi,head,tail_start", [
    ("fft_reflect", 4, 97, 513, 92 * 160), ("centre_reflect", 2, 95, 360, 93 * 160),
    ("end_zero", 0, 94, 0, 94 * 160)])
def test_window_frames_from_the_signal_and_edge_pieces(padding, lo, hi, head, tail_start):
  """A window's interior frames are 'valid' frames of the signal it is cut from; its edge
  frames come from its head and tail pieces; with its sum of squares, the mel power gives
  the frontend's output (what the export's shared-STFT path relies on)."""
  fe = frontend_lib.LogMelFrontend(padding=padding, normalization="per_window")
  assert fe.interior_frames(15360) == (lo, hi)
  assert fe.edge_pieces(15360) == (head, tail_start)
  assert fe.edge_pieces(300) is None  # no interior frame
  signal = np.random.default_rng(4).uniform(-0.5, 0.5, (2, 40000)).astype(np.float32)
  start = 7 * 160 - fe.frame_offset()  # a window on the signal's frame grid
  window = signal[:, start:start + 15360]
  valid = fe.mel_power(signal, padding="valid").numpy()
  head_mel, tail_mel = fe.edge_mel_power(window[:, :head], window[:, tail_start:], 15360)
  mel = np.concatenate([head_mel, valid[:, 7 + lo:7 + hi], tail_mel], axis=1)
  np.testing.assert_allclose(mel, fe.mel_power(window).numpy(), rtol=1e-5, atol=1e-9)
  got = fe.features_from_mel_power(mel, np.sum(np.square(window), axis=-1)).numpy()
  np.testing.assert_allclose(got, fe(window).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalization", ["none", "per_window"])
def test_sliding_features_frame_is_the_centre_frame_of_its_window(normalization):
  """Each frame of `sliding_features` is normalised as the centre frame of the 0.96 s model
  input around it (the one-pass embeddings' input; moved inside the signal near its ends):
  its 'l2_window' factor is the window's (equal to the window's own centre frame without
  'per_window'), and 'per_window' standardises it over the window's frames."""
  fe = frontend_lib.LogMelFrontend(normalization=normalization)
  rng = np.random.default_rng(3)
  signal = (rng.standard_normal(48000) * np.repeat(rng.uniform(0.01, 1.0, 30), 1600)
            ).astype(np.float32)
  window, hop = 15360, fe.hop_length
  frames = fe.num_frames(window)
  mel = fe.mel_power(signal).numpy()
  squares = np.square(signal.astype(np.float64))
  # Each frame's window: centred on it, moved inside the signal near its ends.
  firsts = [min(max(t - frames // 2, 0), mel.shape[0] - frames) for t in range(mel.shape[0])]
  starts = [f * hop for f in firsts]
  context = np.array([squares[max(s, 0):max(s + window, 0)].sum() for s in starts], np.float32)
  sliding = fe.sliding_features(mel[None], context[None], frames).numpy()[0]
  log_mel = np.log(np.maximum(mel / context[:, None], fe.log_floor))
  for t in (3, 60, 137, 190, mel.shape[0] - 2):
    start = (t - frames // 2) * hop
    if normalization == "none":
      if firsts[t] == t - frames // 2 and start + window <= signal.size:
        centre = fe(signal[start:start + window]).numpy()[frames // 2]
        np.testing.assert_allclose(sliding[t], centre, atol=1e-4)
      np.testing.assert_allclose(sliding[t], log_mel[t], atol=1e-4)
    else:
      around = log_mel[firsts[t]:firsts[t] + frames]
      expected = (log_mel[t] - around.mean()) / (around.std() + 1e-7)
      np.testing.assert_allclose(sliding[t], expected, atol=1e-4)
