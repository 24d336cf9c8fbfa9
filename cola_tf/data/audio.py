"""Decoding: encoded audio -> mono float32 waveform in [-1, 1] at the frontend's rate.

* pcm16 (raw 16-bit little-endian mono PCM at `SAMPLE_RATE`, as `make_tfrecords --format
  pcm16` writes it) is decoded by `tf.io.decode_raw`: a graph with no Python, so it runs on
  TPU hosts' input workers and tf.data service workers at full speed (no GIL).
* 16-bit PCM WAV is decoded by TensorFlow's native op.
* FLAC / OGG / MP3 (and WAV subtypes TF cannot read) by libsndfile (soundfile) inside
  `tf.numpy_function`, which names the file when it fails. tensorflow-io is not used: its
  native ops do not load on TF 2.20, and where they do they raise no per-file error we could
  name; its status is logged with the choice, once.

Multi-channel audio is averaged to mono; any other sample rate is resampled with a polyphase
low-pass filter (scipy.signal.resample_poly), never by picking samples.

Long clips: with `max_seconds`, a clip longer than that yields one random window of
`max_seconds` (seeded), and only that window is decoded: files are opened with libsndfile and
seeked (an hour-long file costs what a `max_seconds` file costs), pcm16 bytes are sliced before
decoding. The clip's full duration is returned beside it so the pipeline can name it.

A file that cannot be decoded (corrupt, empty, truncated, not audio, non-finite samples,
zero length) never stops a run: the decoders return ok=False for it, the pipeline drops it,
and `BAD_FILES` counts it and names the first few in the log.
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

from cola_tf import SAMPLE_RATE
from cola_tf import files as files_lib
from cola_tf import logs

PCM16 = "pcm16"
PCM16_SCALE = 1.0 / 32768.0
SOUNDFILE_FORMATS = ("wav", "flac", "ogg", "mp3", "aiff", "aif", "au")


_log = logs.logger("cola_tf")


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
    _log(f"audio decoders: pcm16 records -> tf.io.decode_raw; 16-bit PCM WAV -> tensorflow; "
         f"FLAC/OGG/MP3 and other WAV -> soundfile (libsndfile {sf.__libsndfile_version__}); "
         f"{_tfio_status()}")


def _to_mono_resampled(audio, rate, sample_rate):
  if audio.ndim == 2:
    audio = audio.mean(axis=1)
  if rate != sample_rate:
    g = math.gcd(int(rate), int(sample_rate))
    audio = signal.resample_poly(audio, sample_rate // g, int(rate) // g)
  return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def _check(audio):
  if audio.size == 0:
    return np.zeros([0], np.float32), "no samples"
  if not np.all(np.isfinite(audio)):
    return np.zeros([0], np.float32), "non-finite samples"
  return audio, ""


def _read_window(fileobj, sample_rate, max_seconds, seed):
  """(waveform, full duration in seconds) of an open sound file: the whole file, or one
  random window of `max_seconds` (seeded by `seed`) when it is longer; only that is read."""
  with sf.SoundFile(fileobj) as f:
    rate, frames = f.samplerate, f.frames
    want = frames
    if max_seconds and frames > max_seconds * rate:
      want = int(round(max_seconds * rate))
      rng = np.random.default_rng(np.asarray(seed, np.int64).view(np.uint64))
      f.seek(int(rng.integers(0, frames - want + 1)))
    audio = f.read(want, dtype="float32", always_2d=True)
  return _to_mono_resampled(audio, rate, sample_rate), frames / rate


def decode_numpy(contents, sample_rate, max_seconds=None, seed=(0, 0)):
  """Decodes bytes (or reads a file object) with libsndfile.

  Returns (float32 mono waveform, full duration in seconds, error string or '')."""
  source = io.BytesIO(contents) if isinstance(contents, bytes) else contents
  try:
    audio, seconds = _read_window(source, sample_rate, max_seconds, seed)
  except Exception as e:  # pylint: disable=broad-except
    return np.zeros([0], np.float32), 0.0, f"cannot decode ({type(e).__name__}: {e})"
  audio, error = _check(audio)
  return audio, seconds, error


def _open(path):
  return tf.io.gfile.GFile(path, "rb") if files_lib.is_url(path) else open(path, "rb")


def _as_bytes(value):
  """numpy_function hands scalar strings over as bytes or as 0-d object arrays."""
  return value.item() if isinstance(value, np.ndarray) else value


def _flagged(audio, seconds, error, name):
  if error:
    BAD_FILES.report(name, error)
  return audio, not error, np.float32(seconds)


def _shaped(audio, ok, seconds):
  audio.set_shape([None])
  ok.set_shape([])
  seconds.set_shape([])
  return audio, ok, seconds


def read_file_window(path, sample_rate, max_seconds, seed):
  """Graph function: path -> (waveform, ok, full seconds); reads only a `max_seconds` window
  of a longer file (any tf.io.gfile path). Runs libsndfile in Python."""
  def fn(path, seed):
    name = _as_bytes(path).decode("utf-8", "replace")
    try:
      with _open(name) as f:
        return _flagged(*decode_numpy(f, sample_rate, max_seconds, seed), name)
    except Exception as e:  # pylint: disable=broad-except  (missing, unreadable)
      return _flagged(np.zeros([0], np.float32), 0.0,
                      f"cannot read ({type(e).__name__}: {e})", name)
  return _shaped(*tf.numpy_function(fn, [path, seed], [tf.float32, tf.bool, tf.float32],
                                    stateful=False))


def _numpy_branch(contents, name, sample_rate, max_seconds, seed):
  def fn(contents, name, seed):
    name = _as_bytes(name).decode("utf-8", "replace")
    return _flagged(*decode_numpy(_as_bytes(contents), sample_rate, max_seconds, seed), name)
  return _shaped(*tf.numpy_function(fn, [contents, name, seed],
                                    [tf.float32, tf.bool, tf.float32], stateful=False))


def resample(audio, rate, sample_rate):
  """Graph function: polyphase resampling of a 1-D float32 waveform from `rate`."""
  return _resample_tf(audio, tf.constant(rate, tf.int32), sample_rate)


def _resample_tf(audio, rate, sample_rate):
  def fn(audio, rate):
    return _to_mono_resampled(audio, int(rate), sample_rate)
  out = tf.numpy_function(fn, [audio, rate], tf.float32, stateful=False)
  out.set_shape([None])
  return out


def random_window(audio, max_samples, seed):
  """Graph function: `audio`, or one random window of `max_samples` of it (stateless)."""
  if not max_samples:
    return audio
  n = tf.shape(audio, out_type=tf.int64)[0]
  want = tf.minimum(n, max_samples)
  start = tf.random.stateless_uniform([], seed, 0, n - want + 1, dtype=tf.int64)
  return audio[start:start + want]


def decode_pcm16(contents, name, max_seconds=None, seed=(0, 0)):
  """Graph function, no Python: pcm16 bytes -> (waveform, ok, full seconds) at SAMPLE_RATE.
  Only the bytes of the window are decoded. Odd or empty byte strings are not ok (named on
  stderr: this runs where Python may not)."""
  size = tf.cast(tf.strings.length(contents), tf.int64)
  n = size // 2
  ok = tf.equal(size % 2, 0) & (n > 0)
  want = n
  start = tf.constant(0, tf.int64)
  if max_seconds:
    want = tf.minimum(n, int(round(max_seconds * SAMPLE_RATE)))
    start = tf.random.stateless_uniform([], seed, 0, n - want + 1, dtype=tf.int64)
  window = tf.strings.substr(contents, 2 * start, 2 * tf.where(ok, want, 0))
  audio = tf.cast(tf.io.decode_raw(window, tf.int16, little_endian=True), tf.float32)
  seconds = tf.cast(n, tf.float32) / SAMPLE_RATE

  def report():
    tf.print("[cola_tf] skipping bad audio record", name, "(pcm16 needs an even, non-zero "
             "number of bytes; got", size, ")", output_stream=sys.stderr)
    return ok
  return tf.reshape(audio, [-1]) * PCM16_SCALE, tf.cond(ok, lambda: ok, report), seconds


def _wav_native(contents, sample_rate, max_seconds, seed):
  decoded = tf.audio.decode_wav(contents, desired_channels=-1)
  audio = tf.reduce_mean(decoded.audio, axis=-1)
  rate = tf.cast(decoded.sample_rate, tf.int32)
  seconds = tf.cast(tf.shape(audio)[0], tf.float32) / tf.cast(rate, tf.float32)
  audio = tf.cond(tf.equal(rate, sample_rate), lambda: audio,
                  lambda: _resample_tf(audio, rate, sample_rate))
  return random_window(audio, max_seconds and int(round(max_seconds * sample_rate)), seed), \
      seconds


def decode_clip(contents, name, file_format, sample_rate, max_seconds=None, seed=(0, 0)):
  """Graph function: (bytes, name, format) -> (waveform [n] float32, ok bool, full seconds).

  pcm16 is decoded in the graph. WAV goes through TF's decoder first; if that op fails
  (24-bit, float, corrupt...), the same bytes go to libsndfile, which either decodes them or
  names the file as bad. Other formats go to libsndfile.
  """
  seed = tf.cast(seed, tf.int64)

  def numpy_path():
    return _numpy_branch(contents, name, sample_rate, max_seconds, seed)

  def native_first():
    native = tf.data.Dataset.from_tensors(contents).map(
        lambda c: _wav_native(c, sample_rate, max_seconds, seed)).ignore_errors()
    fallback = tf.data.Dataset.from_tensors(contents).map(
        lambda c: (numpy_path()[0], tf.constant(0.0)))
    audio, seconds = native.concatenate(fallback).take(1).get_single_element()
    usable = tf.reduce_all(tf.math.is_finite(audio)) & (tf.size(audio) > 0)
    return tf.cond(usable, lambda: (audio, tf.constant(True), seconds), numpy_path)

  def pcm16_path():
    if sample_rate != SAMPLE_RATE:
      return _resample_flagged(*decode_pcm16(contents, name, max_seconds, seed), sample_rate)
    return decode_pcm16(contents, name, max_seconds, seed)

  return tf.case([(tf.equal(file_format, PCM16), pcm16_path),
                  (tf.equal(file_format, "wav"), native_first)], default=numpy_path)


def _resample_flagged(audio, ok, seconds, sample_rate):
  return _resample_tf(audio, SAMPLE_RATE, sample_rate), ok, seconds


def decode_or_flag(contents, name, file_format, sample_rate):
  """Graph function: (bytes, name, format) -> (whole waveform, ok)."""
  audio, ok, _ = decode_clip(contents, name, file_format, sample_rate)
  return audio, ok


def decode_native_only(contents, name, file_format, sample_rate, max_seconds=None,
                       seed=(0, 0)):
  """Pure-TF variant of `decode_clip` (no Python in the graph), for tf.data service
  workers: pcm16, and 16-bit PCM WAV at `sample_rate`; anything else is dropped with a line
  naming it on the worker's stderr (remote workers cannot report to this process)."""
  seed = tf.cast(seed, tf.int64)
  if sample_rate == SAMPLE_RATE:
    return tf.cond(tf.equal(file_format, PCM16),
                   lambda: decode_pcm16(contents, name, max_seconds, seed),
                   lambda: _wav_native_only(contents, name, file_format, sample_rate,
                                            max_seconds, seed))
  return _wav_native_only(contents, name, file_format, sample_rate, max_seconds, seed)


def _wav_native_only(contents, name, file_format, sample_rate, max_seconds, seed):
  def wav_and_rate(c):
    decoded = tf.audio.decode_wav(c, desired_channels=-1)
    return tf.reduce_mean(decoded.audio, axis=-1), tf.cast(decoded.sample_rate, tf.int32)

  native = tf.data.Dataset.from_tensors(contents).map(wav_and_rate).ignore_errors()
  fallback = tf.data.Dataset.from_tensors((tf.zeros([0], tf.float32), tf.constant(-1)))
  audio, rate = native.concatenate(fallback).take(1).get_single_element()
  ok = tf.equal(file_format, "wav") & tf.equal(rate, sample_rate) & (tf.size(audio) > 0)
  seconds = tf.cast(tf.size(audio), tf.float32) / sample_rate

  def report():
    tf.print("[cola_tf] skipping bad audio file", name,
             f"(tf.data service workers read only pcm16 records and 16-bit PCM WAV at "
             f"{sample_rate} Hz)", output_stream=sys.stderr)
    return ok

  audio = random_window(audio, max_seconds and int(round(max_seconds * sample_rate)), seed)
  return audio, tf.cond(ok, lambda: ok, report), seconds


def file_format_of(path):
  return os.path.splitext(path)[1].lower().lstrip(".")


def load_file(path, sample_rate):
  """Eager helper: decode one file path (for tools and tests)."""
  with _open(path) as f:
    contents = f.read()
  audio, ok = decode_or_flag(tf.constant(contents), tf.constant(path),
                             tf.constant(file_format_of(path)), sample_rate)
  return audio.numpy(), bool(ok.numpy())
