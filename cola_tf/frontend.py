"""The log-mel frontend: the one definition used by training, export and the HEAR module.

Waveform convention (decided once, here): the frontend takes mono float32 PCM at
`sample_rate` in [-1, 1] exactly as decoded, with *no* gain or peak normalisation of the
waveform. Loudness is part of the signal; any normalisation happens on the log-mel of each
0.96 s window (`normalization='per_example'`), which training crops, exported scene/frame
windows and HEAR inputs all go through in the same function below.
"""
import gin
import tensorflow as tf

NORMALIZATIONS = ("none", "per_example")


@gin.configurable
class LogMelFrontend:
  """Log-mel spectrogram: periodic-Hann STFT -> power -> mel (HTK) -> log(max(x, floor)).

  Defaults are the COLA / audax recipe: 16 kHz, 25 ms window (400), 10 ms hop (160),
  1024-point FFT, 64 mel bins between 60 and 7800 Hz. The signal end is zero-padded so a
  window of N samples gives ceil(N / hop) frames (0.96 s -> 96 frames).
  """

  def __init__(self, sample_rate=16000, window_length=400, hop_length=160,
               fft_length=1024, num_mel_bins=64, lower_edge_hz=60.0,
               upper_edge_hz=7800.0, log_floor=1e-6, normalization="none"):
    if normalization not in NORMALIZATIONS:
      raise ValueError(f"LogMelFrontend.normalization must be one of {NORMALIZATIONS}, "
                       f"got {normalization!r}")
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
    self._mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=self.num_mel_bins,
        num_spectrogram_bins=self.fft_length // 2 + 1,
        sample_rate=self.sample_rate,
        lower_edge_hertz=self.lower_edge_hz,
        upper_edge_hertz=self.upper_edge_hz)

  def params(self):
    """Plain-Python description, written into checkpoints' and exports' metadata."""
    return dict(sample_rate=self.sample_rate, window_length=self.window_length,
                hop_length=self.hop_length, fft_length=self.fft_length,
                num_mel_bins=self.num_mel_bins, lower_edge_hz=self.lower_edge_hz,
                upper_edge_hz=self.upper_edge_hz, log_floor=self.log_floor,
                normalization=self.normalization)

  def num_frames(self, num_samples):
    return -(-int(num_samples) // self.hop_length)

  def log_mel(self, waveform):
    """[..., samples] float32 -> [..., frames, num_mel_bins] float32 (no normalisation)."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    stft = tf.signal.stft(waveform, frame_length=self.window_length,
                          frame_step=self.hop_length, fft_length=self.fft_length,
                          window_fn=tf.signal.hann_window, pad_end=True)
    power = tf.math.square(tf.math.abs(stft))
    mel = tf.tensordot(power, self._mel_matrix, axes=1)
    mel.set_shape(power.shape[:-1].concatenate([self.num_mel_bins]))
    return tf.math.log(tf.maximum(mel, self.log_floor))

  def normalize(self, log_mel):
    """Per-window normalisation of [..., frames, mels] (a no-op for 'none')."""
    if self.normalization == "none":
      return log_mel
    mean, var = tf.nn.moments(log_mel, axes=[-2, -1], keepdims=True)
    return (log_mel - mean) * tf.math.rsqrt(var + 1e-5)

  def __call__(self, waveform):
    """Waveform windows [..., samples] -> model input [..., frames, mels]."""
    return self.normalize(self.log_mel(waveform))
