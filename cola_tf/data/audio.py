"""Decoding: encoded audio -> mono float32 waveform in [-1, 1] at the frontend's rate.

WAV (16-bit PCM) is decoded by TensorFlow's native op; FLAC / OGG / MP3 (and WAV subtypes
TF cannot read) by libsndfile (soundfile), which names the file when it fails. tensorflow-io
is not used for decoding: its native ops do not load on TF 2.20, and where they do they
raise no per-file error we could name; its status is logged with the choice, once. Multi-channel audio is averaged
to mono; any other sample rate is resampled with a polyphase low-pass filter
(scipy.signal.resample_poly), never by picking samples.

A file that cannot be decoded (corrupt, empty, truncated, not audio, non-finite samples,
zero length) never stops a run: `decode_or_flag` returns ok=False for it, the pipeline drops
it, and `BAD_FILES` counts it and names the first few in the log.
"""
import io
import math
import os
import sys
import threading

import numpy as np
import soundfile as sf
import tensorflow as tf
from scipy import signal

TF_NATIVE_FORMATS = ("wav",)
SOUNDFILE_FORMATS = ("wav", "flac", "ogg", "mp3", "aiff", "aif", "au")


def _log(message):
  print(f"[cola_tf] {message}", flush=True)


class BadFileLog:
  """Thread-safe tally of files skipped because they could not be decoded."""

  def __init__(self, max_named=20):
    self.max_named = max_named
    self._lock = threading.Lock()
    self._reasons = {}

  def report(self, name, reason):
    with self._lock:
      if name in self._reasons:
        return
      self._reasons[name] = reason
      count = len(self._reasons)
    if count <= self.max_named:
      _log(f"skipping bad audio file {name}: {reason}")
    elif count == self.max_named + 1:
      _log(f"more bad audio files; only the first {self.max_named} are named")

  @property
  def count(self):
    with self._lock:
      return len(self._reasons)

  def names(self):
    with self._lock:
      return sorted(self._reasons)

  def summary(self):
    names = self.names()
    if not names:
      return "no bad audio files"
    shown = ", ".join(names[: self.max_named])
    more = f" and {len(names) - self.max_named} more" if len(names) > self.max_named else ""
    return f"skipped {len(names)} bad audio file(s): {shown}{more}"

  def reset(self):
    with self._lock:
      self._reasons.clear()


BAD_FILES = BadFileLog()

_DECODER_LOGGED = False


def _tfio_status():
  try:
    import tensorflow_io as tfio  # pylint: disable=import-outside-toplevel
    tfio.audio.decode_flac(tf.constant(b""), dtype=tf.int16)
  except ImportError:
    return "tensorflow-io is not installed"
  except tf.errors.InvalidArgumentError:
    return "tensorflow-io's native ops load, but give no per-file errors to name"
  except Exception as e:  # pylint: disable=broad-except
    return f"tensorflow-io's native ops fail to load here ({type(e).__name__})"
  return "tensorflow-io's native ops load, but give no per-file errors to name"


def log_decoder_choice():
  """Logs, once per process, which decoder handles which format and why."""
  global _DECODER_LOGGED
  if not _DECODER_LOGGED:
    _DECODER_LOGGED = True
    _log(f"audio decoders: 16-bit PCM WAV -> tensorflow; FLAC/OGG/MP3 and other WAV -> "
         f"soundfile (libsndfile {sf.__libsndfile_version__}); {_tfio_status()}")


def _to_mono_resampled(audio, rate, sample_rate):
  if audio.ndim == 2:
    audio = audio.mean(axis=1)
  if rate != sample_rate:
    g = math.gcd(int(rate), int(sample_rate))
    audio = signal.resample_poly(audio, sample_rate // g, int(rate) // g)
  return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def decode_numpy(contents, sample_rate):
  """Decodes bytes with libsndfile. Returns (float32 mono waveform, error string or '')."""
  try:
    audio, rate = sf.read(io.BytesIO(contents), dtype="float32", always_2d=True)
  except Exception as e:  # pylint: disable=broad-except
    return np.zeros([0], np.float32), f"cannot decode ({type(e).__name__}: {e})"
  return _check(_to_mono_resampled(audio, rate, sample_rate))


def _check(audio):
  if audio.size == 0:
    return np.zeros([0], np.float32), "no samples"
  if not np.all(np.isfinite(audio)):
    return np.zeros([0], np.float32), "non-finite samples"
  return audio, ""


def _as_bytes(value):
  """numpy_function hands scalar strings over as bytes or as 0-d object arrays."""
  return value.item() if isinstance(value, np.ndarray) else value


def _numpy_branch(contents, name, sample_rate):
  def fn(contents, name):
    contents, name = _as_bytes(contents), _as_bytes(name).decode("utf-8", "replace")
    audio, error = decode_numpy(contents, sample_rate)
    if error:
      BAD_FILES.report(name, error)
    return audio, not error
  audio, ok = tf.numpy_function(fn, [contents, name], [tf.float32, tf.bool], stateful=False)
  audio.set_shape([None])
  ok.set_shape([])
  return audio, ok


def resample(audio, rate, sample_rate):
  """Graph function: polyphase resampling of a 1-D float32 waveform from `rate`."""
  return _resample_tf(audio, tf.constant(rate, tf.int32), sample_rate)


def _resample_tf(audio, rate, sample_rate):
  def fn(audio, rate):
    return _to_mono_resampled(audio, int(rate), sample_rate)
  out = tf.numpy_function(fn, [audio, rate], tf.float32, stateful=False)
  out.set_shape([None])
  return out


def _wav_native(contents, sample_rate):
  decoded = tf.audio.decode_wav(contents, desired_channels=-1)
  audio = tf.reduce_mean(decoded.audio, axis=-1)
  rate = tf.cast(decoded.sample_rate, tf.int32)
  return tf.cond(tf.equal(rate, sample_rate), lambda: audio,
                 lambda: _resample_tf(audio, rate, sample_rate))


def decode_or_flag(contents, name, file_format, sample_rate):
  """Graph function: (bytes, name, format) -> (waveform [n] float32, ok bool).

  WAV goes through TF's decoder first; if that op fails (24-bit, float, corrupt...), the
  same bytes go to libsndfile, which either decodes them or names the file as bad.
  """
  def numpy_path():
    return _numpy_branch(contents, name, sample_rate)

  def native_first():
    native = tf.data.Dataset.from_tensors(contents).map(
        lambda c: _wav_native(c, sample_rate)).ignore_errors()
    fallback = tf.data.Dataset.from_tensors(contents).map(lambda c: numpy_path()[0])
    audio = native.concatenate(fallback).take(1).get_single_element()
    usable = tf.reduce_all(tf.math.is_finite(audio)) & (tf.size(audio) > 0)
    return tf.cond(usable, lambda: (audio, tf.constant(True)), numpy_path)

  return tf.cond(tf.equal(file_format, "wav"), native_first, numpy_path)


def decode_native_only(contents, name, file_format, sample_rate):
  """Pure-TF variant of `decode_or_flag` (no Python in the graph), for tf.data service
  workers: only 16-bit PCM WAV at `sample_rate` is usable; anything else is dropped with a
  line naming it on the worker's stderr (remote workers cannot report to this process)."""
  def wav_and_rate(c):
    decoded = tf.audio.decode_wav(c, desired_channels=-1)
    return tf.reduce_mean(decoded.audio, axis=-1), tf.cast(decoded.sample_rate, tf.int32)

  native = tf.data.Dataset.from_tensors(contents).map(wav_and_rate).ignore_errors()
  fallback = tf.data.Dataset.from_tensors((tf.zeros([0], tf.float32), tf.constant(-1)))
  audio, rate = native.concatenate(fallback).take(1).get_single_element()
  ok = tf.equal(file_format, "wav") & tf.equal(rate, sample_rate) & (tf.size(audio) > 0)

  def report():
    tf.print("[cola_tf] skipping bad audio file", name,
             f"(tf.data service workers read only 16-bit PCM WAV at {sample_rate} Hz)",
             output_stream=sys.stderr)
    return ok

  return audio, tf.cond(ok, lambda: ok, report)


def file_format_of(path):
  return os.path.splitext(path)[1].lower().lstrip(".")


def load_file(path, sample_rate):
  """Eager helper: decode one file path (for tools and tests)."""
  with open(path, "rb") as f:
    contents = f.read()
  audio, ok = decode_or_flag(tf.constant(contents), tf.constant(path),
                             tf.constant(file_format_of(path)), sample_rate)
  return audio.numpy(), bool(ok.numpy())
