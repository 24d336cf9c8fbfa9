"""HEAR 2021 API over a cola_tf export (a TensorFlow SavedModel; TensorFlow alone needed).

  import hear_module
  model = hear_module.load_model("runs/tiny/export")
  scene = hear_module.get_scene_embeddings(audio, model)            # [n_sounds, D]
  emb, ts = hear_module.get_timestamp_embeddings(audio, model)      # [n, frames, D], [n, frames]

`audio` is [n_sounds, n_samples] at 16 kHz in [-1, 1] (tf.Tensor or numpy). Frame
embeddings come every 50 ms, centred on their timestamps (0 ms, 50 ms, ... up to the clip's
duration, in milliseconds), each from the 0.96 s window around it (zero-padded past the
clip's ends). The scene embedding is the mean of the embeddings of half-overlapping 0.96 s
windows that lie within the clip (the last one ends at the clip's end; a clip shorter than
0.96 s is one zero-padded window). Every window is scaled to unit L2 norm before its log-mel
(the training recipe's waveform normalisation), so the clip's gain does not change the
embeddings. Clips are embedded a few at a time and windows in chunks, so memory stays
bounded for long audio.

Input handling:
* dtype: float32 as is; other floating types (float64, soundfile's default, float16,
  bfloat16) are cast to float32. Integer PCM (int16, int32, ...) is refused with a
  ValueError (no guessing of its full scale: divide int16 by 32768 yourself).
* level: audio is expected in [-1, 1]; if a batch peaks above 1.5 in magnitude a
  UserWarning (`AudioRangeWarning`) is issued, once per process (integer PCM cast to float
  without scaling is the usual cause). Such audio is still embedded.
* 0-sample clips ([n_sounds, 0]) are silence: the scene embedding is that of one all-zero
  window, and the timestamp embeddings are one frame, at 0 ms, of an all-zero window.
* NaN or Inf, or a shape other than [n_sounds, n_samples]: ValueError.

`load_model(path, **options)` takes heareval's `--model-options` JSON as keywords:
* clips_per_call (int >= 1, default 16): clips per call into the SavedModel (memory grows
  with it for long clips).
* fast (bool, default False): scene and timestamp embeddings from one encoder pass per
  clip (cola_tf.export.encoder_frames): the encoder's frames around each window's centre, pooled
  as the encoder pools, instead of the encoder on each window. Same frames, timestamps
  and sizes; close to, not equal to, the exact numbers; 2-4x faster on long clips (not on
  1 s clips); through heareval, scenes score the same and event onsets lower
  (docs/hear.md). Exports written before it have no fast mode (re-export them).
It imports TensorFlow and cola_tf.export.metadata (which imports TensorFlow only): not
the trainer, gin or Keras.
"""
import warnings

import numpy as np
import tensorflow as tf

from cola_tf.export import metadata as export_metadata

# Clips per call into the SavedModel: bounds memory for batches of long clips.
CLIPS_PER_CALL = 16
# A batch peaking above this (in magnitude) gets one AudioRangeWarning per process.
LOUD_PEAK = 1.5
# load_model's keyword options (heareval's --model-options) and what they must be.
FAST = False
MODEL_OPTIONS = {"clips_per_call": "an int >= 1 (clips per call into the SavedModel; default "
                                   f"{CLIPS_PER_CALL})",
                 "fast": f"true or false (one encoder pass per clip; default {FAST})"}
_warned_loud = False


class AudioRangeWarning(UserWarning):
  """Audio far outside [-1, 1] (see the module docstring)."""


class ColaHearModel(tf.Module):
  """The loaded export: a tf.Module with the attributes the HEAR API asks for."""

  def __init__(self, path, clips_per_call=CLIPS_PER_CALL, fast=FAST):
    super().__init__(name="cola_hear_model")
    self.metadata = export_metadata.read(path, who="load_model")
    check_model_options({"fast": fast}, self.metadata, who=f"load_model({path!r})")
    self.clips_per_call = clips_per_call
    self.fast = fast
    self.saved_model = tf.saved_model.load(path)
    self.sample_rate = int(self.metadata["sample_rate"])
    self.scene_embedding_size = int(self.metadata["scene_embedding_size"])
    self.timestamp_embedding_size = int(self.metadata["timestamp_embedding_size"])


def check_model_options(options, metadata=None, who="load_model"):
  """`options` (load_model's keywords, heareval's --model-options) with defaults filled in;
  a one-line ValueError for an unknown option, a bad value, or (given the export's
  metadata) a timestamp mode the export does not have."""
  unknown = sorted(set(options) - set(MODEL_OPTIONS))
  if unknown:
    accepted = "; ".join(f"{k}: {v}" for k, v in MODEL_OPTIONS.items())
    raise ValueError(f"{who}: unknown option(s) {unknown}; accepted: {accepted}")
  clips = options.get("clips_per_call", CLIPS_PER_CALL)
  if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
    raise ValueError(f"{who}: clips_per_call must be {MODEL_OPTIONS['clips_per_call']}, "
                     f"got {clips!r}")
  fast = options.get("fast", FAST)
  if not isinstance(fast, bool):
    raise ValueError(f"{who}: fast must be {MODEL_OPTIONS['fast']}, got {fast!r}")
  if fast and metadata is not None and not metadata.get("fast_embeddings", False):
    raise ValueError(f"{who}: the export has no fast embeddings (written before them, or "
                     "its encoder has no fixed frame stride); re-export it with `python -m "
                     "cola_tf.export`, or leave fast off")
  return {"clips_per_call": clips, "fast": fast}


def load_model(model_file_path="", **options):
  """Loads a cola_tf export folder (written by `python -m cola_tf.export`). `options` are
  heareval's `--model-options` (see MODEL_OPTIONS)."""
  options = check_model_options(options)
  if not model_file_path:
    raise ValueError("load_model needs the path of a cola_tf export folder (a SavedModel "
                     "written by `python -m cola_tf.export`)")
  return ColaHearModel(model_file_path, **options)


def _check_audio(audio, model):
  global _warned_loud
  if not isinstance(model, ColaHearModel):
    raise ValueError(f"expected a model from hear_module.load_model, got {type(model).__name__}")
  expected = f"float32 [n_sounds, n_samples] at {model.sample_rate} Hz in [-1, 1]"
  dtype = tf.as_dtype(audio.dtype if tf.is_tensor(audio) else np.asarray(audio).dtype)
  if not dtype.is_floating:
    hint = (" (integer PCM: divide by its full scale, e.g. int16 by 32768)" if dtype.is_integer
            else "")
    raise ValueError(f"audio must be {expected}, got dtype {dtype.name}{hint}")
  audio = tf.cast(audio, tf.float32) if tf.is_tensor(audio) else tf.convert_to_tensor(
      np.asarray(audio, np.float32))
  if audio.shape.rank != 2:
    raise ValueError(f"audio must be {expected}, got shape {audio.shape}")
  if not bool(tf.reduce_all(tf.math.is_finite(audio))):
    raise ValueError("audio contains NaN or Inf values")
  if not _warned_loud and tf.size(audio) > 0:
    peak = float(tf.reduce_max(tf.abs(audio)))
    if peak > LOUD_PEAK:
      _warned_loud = True
      warnings.warn(f"audio peaks at |x| = {peak:.4g}, far outside [-1, 1]: HEAR audio is float "
                    "in [-1, 1] (was integer PCM cast without scaling?). Embedding it anyway; "
                    "this warning is shown once.", AudioRangeWarning, stacklevel=3)
  return audio


def get_timestamp_embeddings(audio, model):
  """-> (embeddings float32 [n_sounds, n_frames, D], timestamps float32 ms [n_sounds, n_frames])."""
  audio = _check_audio(audio, model)
  n = int(audio.shape[0])
  if n == 0:
    frames = int(audio.shape[1]) * 1000 // model.sample_rate // 50 + 1
    return (tf.zeros([0, frames, model.timestamp_embedding_size]), tf.zeros([0, frames]))
  step = model.clips_per_call
  embed = (model.saved_model.timestamp_embeddings_fast if model.fast
           else model.saved_model.timestamp_embeddings)
  parts = [embed(audio[i:i + step]) for i in range(0, n, step)]
  return tf.concat([p[0] for p in parts], 0), tf.concat([p[1] for p in parts], 0)


def get_scene_embeddings(audio, model):
  """-> float32 [n_sounds, D]."""
  audio = _check_audio(audio, model)
  n = int(audio.shape[0])
  if n == 0:
    return tf.zeros([0, model.scene_embedding_size])
  step = model.clips_per_call
  embed = (model.saved_model.scene_embeddings_fast if model.fast
           else model.saved_model.scene_embeddings)
  return tf.concat([embed(audio[i:i + step]) for i in range(0, n, step)], 0)
