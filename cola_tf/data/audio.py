"""Decoding: audio files -> mono float32 waveforms in [-1, 1] at the frontend's rate."""
import tensorflow as tf


def load_wav(path, sample_rate):
  """Reads a PCM WAV with TF's native decoder and averages channels to mono.

  A file at another sample rate fails with an error naming the file (no silent resampling).
  """
  decoded = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=-1)
  check = tf.debugging.Assert(
      tf.equal(decoded.sample_rate, sample_rate),
      [f"expected {sample_rate} Hz audio; file and its rate:", path, decoded.sample_rate])
  with tf.control_dependencies([check]):
    return tf.reduce_mean(decoded.audio, axis=-1)
