"""Waveform normalisation and the log-mel frontend: the one definition of how audio becomes
model input, used by training, export, the HEAR module and the linear probe alike.

Waveform convention: mono float32 PCM at `sample_rate` as decoded. Before the log-mel, the
waveform is scaled to unit L2 norm (`waveform_normalization`), as both references do:
* 'l2_window' (the recipe, audax's `parse_tf_record_tfio_contrastive`): each model input,
  i.e. each 0.96 s training crop, each exported window, each whole probe clip, is scaled
  to unit L2 norm on its own.
* 'l2_clip' (google-research `cola/contrastive.py`): each whole clip is scaled once, before
  it is cropped or cut into windows (`normalize_clip`).
* 'none': the level as decoded (loudness stays part of the signal).
Either L2 form makes the features independent of the clip's gain. Training adds Gaussian
noise to the positive's waveform after this normalisation (`__call__(..., noise=...)`).
"""
import gin
import numpy as np
import tensorflow as tf

from cola_tf import SAMPLE_RATE
from cola_tf import logs

NORMALIZATIONS = ("none", "per_window")
# Old value names still read (operative configs of earlier runs hold them), with a note.
RENAMED_NORMALIZATIONS = {"per_example": "per_window"}
WAVEFORM_NORMALIZATIONS = ("l2_window", "l2_clip", "none")
WINDOWS = ("hann_symmetric", "hann_periodic")
PADDINGS = ("fft_reflect", "centre_reflect", "end_zero")
MEL_FILTERBANKS = ("hz_triangles", "mel_triangles")
L2_EPSILON = 1e-9  # both references: tf.math.l2_normalize(x, epsilon=1e-9)


# Autograph converts every Python function a traced function calls, and repeats it for each
# trace (an export traces a dozen): ~25 ms a call, ~5 s an export. The frontend's branches are
# on its Python settings, not on tensors, so it runs as written (valid_mel_power, whose loop
# is over a tensor, is converted).
_plain = tf.autograph.experimental.do_not_convert


@_plain
def l2_normalize(waveform):
  """Unit L2 norm over the last axis; all-zero input stays zero."""
  return tf.math.l2_normalize(waveform, axis=-1, epsilon=L2_EPSILON)


def hz_triangle_filterbank(num_mel_bins, fft_length, sample_rate, lower_edge_hz,
                           upper_edge_hz):
  """audax's (torchaudio's) HTK mel filterbank, norm None: [fft_length // 2 + 1, bins]."""
  freqs = np.linspace(0.0, sample_rate // 2, fft_length // 2 + 1)
  to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
  mels = np.linspace(to_mel(lower_edge_hz), to_mel(upper_edge_hz), num_mel_bins + 2)
  points = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
  slopes = points[None, :] - freqs[:, None]
  widths = np.diff(points)
  down = -slopes[:, :-2] / widths[:-1]
  up = slopes[:, 2:] / widths[1:]
  return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


@gin.configurable
class LogMelFrontend:
  """Waveform normalisation -> STFT -> power -> mel (HTK) -> log(max(x, floor)).

  Defaults are audax's COLA recipe: 16 kHz, 25 ms window (400), 10 ms hop (160), 1024-point
  FFT, 64 mel bins between 60 and 7800 Hz, symmetric Hann window (`jnp.hanning`), log floor
  1e-8, and audax's framing and filterbank:
  * padding 'fft_reflect' (audax's `stft(center=True)`): reflect-pad fft_length // 2 = 512
    samples at both ends, then a 400-sample frame every 160 samples from the start of the
    padded signal (the FFT zero-pads each frame at its end). Frame t sees samples
    [160 t - 512, 160 t - 112): 1 + (N + 624) // 160 frames, 0.96 s -> 100, 1 s -> 104.
    'centre_reflect' is torch's centred layout (reflect-pad window_length // 2, frame t
    centred on 160 t: 97 and 101 frames); 'end_zero' zero-pads the end (ceil(N / hop)
    frames: 96 for 0.96 s, google-research-like). Reflect padding needs an input longer
    than the padding (512 samples for 'fft_reflect').
  * mel_filterbank 'hz_triangles' (audax / torchaudio `melscale_fbanks`, HTK, no norm):
    triangles linear in Hz between mel-spaced points; 'mel_triangles' is TensorFlow's
    `linear_to_mel_weight_matrix` (triangles linear in mel, google-research).
  `normalization='per_window'` also standardises each model input's log-mel over time and
  frequency ((x - mean) / (std + 1e-7), audax's `normalize_batch`).
  """

  def __init__(self, sample_rate=SAMPLE_RATE, window_length=400, hop_length=160,
               fft_length=1024, num_mel_bins=64, lower_edge_hz=60.0,
               upper_edge_hz=7800.0, log_floor=1e-8, normalization="none",
               waveform_normalization="l2_window", window="hann_symmetric",
               padding="fft_reflect", mel_filterbank="hz_triangles"):
    if normalization in RENAMED_NORMALIZATIONS:
      logs.log(f"note: LogMelFrontend.normalization = {normalization!r} is now "
               f"{RENAMED_NORMALIZATIONS[normalization]!r}")
      normalization = RENAMED_NORMALIZATIONS[normalization]
    for name, value, allowed in (("normalization", normalization, NORMALIZATIONS),
                                 ("waveform_normalization", waveform_normalization,
                                  WAVEFORM_NORMALIZATIONS),
                                 ("window", window, WINDOWS), ("padding", padding, PADDINGS),
                                 ("mel_filterbank", mel_filterbank, MEL_FILTERBANKS)):
      if value not in allowed:
        raise ValueError(f"LogMelFrontend.{name} must be one of {allowed}, got {value!r}")
    if not 0 <= lower_edge_hz < upper_edge_hz <= sample_rate / 2:
      raise ValueError(f"LogMelFrontend: need 0 <= lower_edge_hz < upper_edge_hz <= "
                       f"sample_rate/2, got {lower_edge_hz}, {upper_edge_hz}, {sample_rate}")
    if fft_length < window_length:
      raise ValueError(f"LogMelFrontend: fft_length {fft_length} < window_length {window_length}")
    self.sample_rate = int(sample_rate)
    self.window_length = int(window_length)
    self.hop_length = int(hop_length)
    self.fft_length = int(fft_length)
    self.num_mel_bins = int(num_mel_bins)
    self.lower_edge_hz = float(lower_edge_hz)
    self.upper_edge_hz = float(upper_edge_hz)
    self.log_floor = float(log_floor)
    self.normalization = normalization
    self.waveform_normalization = waveform_normalization
    self.window = window
    self.padding = padding
    self.mel_filterbank = mel_filterbank
    self._mel_matrix = self._filterbank()

  def _filterbank(self):
    """[fft_length // 2 + 1, num_mel_bins] float32 weights."""
    if self.mel_filterbank == "mel_triangles":
      return tf.signal.linear_to_mel_weight_matrix(
          num_mel_bins=self.num_mel_bins, num_spectrogram_bins=self.fft_length // 2 + 1,
          sample_rate=self.sample_rate, lower_edge_hertz=self.lower_edge_hz,
          upper_edge_hertz=self.upper_edge_hz)
    return tf.constant(hz_triangle_filterbank(self.num_mel_bins, self.fft_length,
                                              self.sample_rate, self.lower_edge_hz,
                                              self.upper_edge_hz), tf.float32)

  def params(self):
    """Plain-Python description, written into checkpoints' and exports' metadata."""
    return dict(sample_rate=self.sample_rate, window_length=self.window_length,
                hop_length=self.hop_length, fft_length=self.fft_length,
                num_mel_bins=self.num_mel_bins, lower_edge_hz=self.lower_edge_hz,
                upper_edge_hz=self.upper_edge_hz, log_floor=self.log_floor,
                normalization=self.normalization,
                waveform_normalization=self.waveform_normalization, window=self.window,
                padding=self.padding, mel_filterbank=self.mel_filterbank)

  @_plain
  def reflect_samples(self):
    """Samples of reflect padding at each end of a model input (0 for 'end_zero')."""
    if self.padding == "fft_reflect":
      return self.fft_length // 2
    if self.padding == "centre_reflect":
      return self.window_length // 2
    return 0

  @_plain
  def num_frames(self, num_samples):
    if self.padding == "end_zero":
      return -(-int(num_samples) // self.hop_length)
    padded = int(num_samples) + 2 * self.reflect_samples()
    return 1 + (padded - self.window_length) // self.hop_length

  def _window_fn(self, length, dtype):
    if self.window == "hann_periodic":
      return tf.signal.hann_window(length, periodic=True, dtype=dtype)
    # np.hanning / jnp.hanning: 0.5 - 0.5 cos(2 pi n / (N - 1)), zero at both ends
    # (stft passes the length as a tensor, so the window is built from our own int).
    del length
    return tf.constant(np.hanning(self.window_length), dtype=dtype)

  @_plain
  def normalize_clip(self, waveform):
    """A whole clip [..., samples] before cropping or windowing ('l2_clip' only)."""
    if self.waveform_normalization == "l2_clip":
      return l2_normalize(waveform)
    return tf.convert_to_tensor(waveform, tf.float32)

  @_plain
  def clip_input(self, audio, min_samples):
    """A whole clip [batch, samples] as one model input, as the export's `clip_embeddings`
    and the online evaluation take it: 'l2_clip' normalisation, then centred zero padding
    up to `min_samples` (a training window) when shorter."""
    audio = self.normalize_clip(audio)
    missing = tf.maximum(int(min_samples) - tf.shape(audio)[-1], 0)
    return tf.pad(audio, [[0, 0], [missing // 2, missing - missing // 2]])

  @_plain
  def normalize_window(self, waveform):
    """One model input [..., samples] ('l2_window' only)."""
    if self.waveform_normalization == "l2_window":
      return l2_normalize(waveform)
    return tf.convert_to_tensor(waveform, tf.float32)

  @_plain
  def frame_offset(self):
    """Frame j of a model input starts at its sample j * hop_length + frame_offset() (a
    negative offset reaches into the reflect padding)."""
    return -self.reflect_samples()

  @_plain
  def interior_frames(self, num_samples):
    """(lo, hi): frames lo..hi-1 of a model input of `num_samples` see only its own samples,
    none of the padding. Those frames of a window cut from a longer signal equal the frames
    of the signal itself; the others ('edge frames') see padding and must be computed from
    the window (`edge_pieces`, `edge_mel_power`)."""
    offset, hop = self.frame_offset(), self.hop_length
    lo = -(offset // hop)  # ceil(-offset / hop)
    hi = min((int(num_samples) - self.window_length - offset) // hop + 1,
             self.num_frames(num_samples))
    return lo, max(hi, lo)

  @_plain
  def edge_pieces(self, num_samples):
    """(head_samples, tail_start): the edge frames of a model input x of `num_samples` are
    `edge_mel_power(x[..., :head_samples], x[..., tail_start:], num_samples)`. tail_start
    is a multiple of hop_length. None when the input has no interior frame."""
    lo, hi = self.interior_frames(num_samples)
    if hi <= lo:
      return None
    hop, pad = self.hop_length, self.reflect_samples()
    # Frames 0..lo-1 end by (lo - 1) * hop - pad + window_length; reflect padding needs
    # more samples than it pads.
    head = max((lo - 1) * hop - pad + self.window_length, pad + 1) if lo else 0
    # The tail piece starts `shift` frames in: its frames from hi - shift on are the
    # input's from hi on when they see none of the piece's front padding (shift <= hi - lo),
    # and it must be longer than the padding.
    shift = min(hi - lo, (int(num_samples) - pad - 1) // hop)
    if shift < 0 or head > int(num_samples):
      return None
    return head, shift * hop

  @_plain
  def edge_mel_power(self, head, tail, num_samples):
    """Linear mel power of the edge frames of model inputs of `num_samples` (see
    `edge_pieces`): ([..., lo, mels] from `head`, [..., frames - hi, mels] from `tail`)."""
    lo, hi = self.interior_frames(num_samples)
    shift = self.edge_pieces(num_samples)[1] // self.hop_length
    tail = self.mel_power(tail)[..., hi - shift:, :]
    if not lo:  # no head frames ('end_zero')
      return tail[..., :0, :], tail
    return self.mel_power(head)[..., :lo, :], tail

  @_plain
  def mel_power(self, waveform, padding=None):
    """[..., samples] float32 -> linear mel power [..., frames, num_mel_bins] (no
    normalisation of any kind). `padding` is the frontend's own by default, or 'valid':
    frame j is samples [j * hop, j * hop + window_length), no padding, so frames of a long
    signal can be computed in pieces. Reflect padding needs more samples than it pads."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    padding = padding or self.padding
    pad = self.reflect_samples() if padding in ("fft_reflect", "centre_reflect") else 0
    if pad:
      # 'centre_reflect': torch.stft(center=True) pads n_fft // 2 and centres the window in
      # the FFT frame; the samples a frame sees are those of padding window_length // 2 here.
      # 'fft_reflect': audax pads n_fft // 2 and does not centre the window.
      rank = waveform.shape.rank
      waveform = tf.pad(waveform, [[0, 0]] * (rank - 1) + [[pad, pad]], mode="REFLECT")
    stft = tf.signal.stft(waveform, frame_length=self.window_length,
                          frame_step=self.hop_length, fft_length=self.fft_length,
                          window_fn=self._window_fn, pad_end=padding == "end_zero")
    power = tf.math.square(tf.math.abs(stft))
    mel = tf.tensordot(power, self._mel_matrix, axes=1)
    mel.set_shape(power.shape[:-1].concatenate([self.num_mel_bins]))
    return mel

  def valid_mel_power(self, signal, num_frames, frames_per_call):
    """'valid' mel power frames 0..num_frames-1 of `signal` [batch, samples] -> [batch,
    num_frames, mels] (frame j: samples [j * hop, j * hop + window_length)), computed
    `frames_per_call` frames (over the batch) at a time, so memory stays bounded for long
    signals."""
    per_call = tf.maximum(frames_per_call // tf.maximum(tf.shape(signal)[0], 1), 1)
    calls = (num_frames + per_call - 1) // per_call
    out = tf.TensorArray(tf.float32, size=calls, infer_shape=False,
                         element_shape=tf.TensorShape([None, None, self.num_mel_bins]))
    for i in tf.range(calls):
      first = i * per_call
      last = tf.minimum(first + per_call, num_frames)
      piece = signal[:, first * self.hop_length:(last - 1) * self.hop_length
                     + self.window_length]
      out = out.write(i, tf.transpose(self.mel_power(piece, padding="valid"), [1, 0, 2]))
    return tf.transpose(out.concat(), [1, 0, 2])

  @_plain
  def block_sum_squares(self, signal, blocks):
    """[batch, blocks]: sums of squared samples of the hop-sized blocks of `signal` [batch,
    samples] (a window on the frame grid sums its blocks: the 'l2_window' factor)."""
    return tf.reduce_sum(tf.square(tf.reshape(
        signal[:, :blocks * self.hop_length], [tf.shape(signal)[0], blocks,
                                               self.hop_length])), axis=-1)

  @staticmethod
  @_plain
  def sliding_windows(frames, context_frames):
    """(first, last) [frames] of each frame's context: the `context_frames` frames centred
    on it, moved inside 0..frames-1 near the ends (shorter only if frames are fewer)."""
    first = tf.clip_by_value(tf.range(frames) - context_frames // 2, 0,
                             tf.maximum(frames - context_frames, 0))
    return first, tf.minimum(first + context_frames, frames)

  @_plain
  def log_compress(self, mel_power):
    """log(max(mel power, log_floor))."""
    return tf.math.log(tf.maximum(mel_power, self.log_floor))

  @_plain
  def log_mel(self, waveform):
    """[..., samples] float32 -> [..., frames, num_mel_bins] (no normalisation of any kind).

    Reflect padding needs more samples than it pads."""
    return self.log_compress(self.mel_power(waveform))

  @_plain
  def window_power_scale(self, sum_squares):
    """What 'l2_window' multiplies a model input's (mel) power by, from the input's sum of
    squared samples: the square of tf.math.l2_normalize's factor (None for other modes)."""
    if self.waveform_normalization != "l2_window":
      return None
    scale = tf.math.rsqrt(tf.maximum(sum_squares, L2_EPSILON))
    return scale * scale

  @_plain
  def features_from_mel_power(self, mel_power, sum_squares=None):
    """Model inputs from the linear mel power of un-normalised inputs [..., frames, mels]
    and their sums of squared samples [...]: the same numbers as `__call__` on the inputs
    (up to float rounding; no noise), as scaling a waveform by a scales its power by a^2."""
    scale = self.window_power_scale(sum_squares)
    if scale is not None:
      mel_power = mel_power * scale[..., None, None]
    return self.normalize(self.log_compress(mel_power))

  @_plain
  def sliding_features(self, mel_power, context_sum_squares, context_frames):
    """Model-input features of every frame of a long signal, each frame normalised as the
    centre frame of a model input around it would be: a sliding form of the per-input
    normalisations, for reading frame embeddings off one encoder pass over a clip.

    mel_power: [batch, frames, mels] of the un-normalised signal (the frontend's framing);
    context_sum_squares: [batch, frames], the sum of squared samples of each frame's model
    input (`context_frames` frames long): the one centred on it, moved inside the signal
    near its ends, as windows that must lie within a clip are. 'l2_window' scales each
    frame's power by its context's factor; 'per_window' standardises each frame with the
    mean and standard deviation of the log-mel over its context's frames. For the centre
    frame of a model input whose frames are all interior, the numbers are `__call__`'s, up
    to float rounding.
    """
    scale = self.window_power_scale(context_sum_squares)
    if scale is not None:
      mel_power = mel_power * scale[..., None]
    log_mel = self.log_compress(mel_power)
    if self.normalization == "none":
      return log_mel
    # Moments over [t - c, t - c + context_frames) from cumulative sums (float64: long clips).
    frame_sums = tf.cast(tf.stack([tf.reduce_sum(log_mel, -1),
                                   tf.reduce_sum(tf.square(log_mel), -1)], -1), tf.float64)
    cumulative = tf.pad(tf.cumsum(frame_sums, axis=1), [[0, 0], [1, 0], [0, 0]])
    first, last = self.sliding_windows(tf.shape(log_mel)[1], context_frames)
    sums = tf.gather(cumulative, last, axis=1) - tf.gather(cumulative, first, axis=1)
    count = tf.cast(last - first, tf.float64)[:, None] * self.num_mel_bins
    mean = sums[..., 0:1] / count
    variance = tf.maximum(sums[..., 1:2] / count - tf.square(mean), 0.0)
    mean, std = tf.cast(mean, tf.float32), tf.cast(tf.sqrt(variance), tf.float32)
    return (log_mel - mean) / (std + 1e-7)

  @_plain
  def normalize(self, log_mel):
    """Per-input standardisation of [..., frames, mels] (a no-op for 'none')."""
    if self.normalization == "none":
      return log_mel
    mean, var = tf.nn.moments(log_mel, axes=[-2, -1], keepdims=True)
    return (log_mel - mean) / (tf.sqrt(var) + 1e-7)

  @_plain
  def __call__(self, waveform, noise=None):
    """Model inputs [..., samples] -> [..., frames, mels]. `noise` (training's positives
    only) is added to the normalised waveform, as both references do."""
    waveform = self.normalize_window(waveform)
    if noise is not None:
      waveform = waveform + noise
    return self.normalize(self.log_mel(waveform))
