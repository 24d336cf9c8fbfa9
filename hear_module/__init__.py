"""HEAR 2021 API over a cola_tf export (a TensorFlow SavedModel; TensorFlow alone needed).

  import hear_module
  model = hear_module.load_model("runs/tiny/export")
  scene = hear_module.get_scene_embeddings(audio, model)            # [n_sounds, D]
  emb, ts = hear_module.get_timestamp_embeddings(audio, model)      # [n, frames, D], [n, frames]

`audio` is float32 [n_sounds, n_samples] at 16 kHz in [-1, 1] (tf.Tensor or numpy). Frame
embeddings come every 50 ms, centred on their timestamps (0 ms, 50 ms, ... up to the clip's
duration, in milliseconds), each from the 0.96 s window around it (zero-padded past the
clip's ends). The scene embedding is the mean of the embeddings of half-overlapping 0.96 s
windows that lie within the clip (the last one ends at the clip's end; a clip shorter than
0.96 s is one zero-padded window). Every window is scaled to unit L2 norm before its log-mel
(the training recipe's waveform normalisation), so the clip's gain does not change the
embeddings. Clips are embedded a few at a time and windows in chunks, so memory stays
bounded for long audio.
This package does not import cola_tf.
"""
import json
import os

import numpy as np
import tensorflow as tf

METADATA = "cola_metadata.json"
# Clips per call into the SavedModel: bounds memory for batches of long clips.
CLIPS_PER_CALL = 16


class ColaHearModel(tf.Module):
  """The loaded export: a tf.Module with the attributes the HEAR API asks for."""

  def __init__(self, path):
    super().__init__(name="cola_hear_model")
    meta_path = os.path.join(path, METADATA)
    if not tf.io.gfile.exists(meta_path):
      raise ValueError(f"load_model: {path!r} is not a cola_tf export (no {METADATA}); "
                       "create one with `python -m cola_tf.export --model_dir DIR`")
    with tf.io.gfile.GFile(meta_path) as f:
      self.metadata = json.load(f)
    self.saved_model = tf.saved_model.load(path)
    self.sample_rate = int(self.metadata["sample_rate"])
    self.scene_embedding_size = int(self.metadata["scene_embedding_size"])
    self.timestamp_embedding_size = int(self.metadata["timestamp_embedding_size"])


def load_model(model_file_path=""):
  """Loads a cola_tf export folder (written by `python -m cola_tf.export`)."""
  if not model_file_path:
    raise ValueError("load_model needs the path of a cola_tf export folder (a SavedModel "
                     "written by `python -m cola_tf.export`)")
  return ColaHearModel(model_file_path)


def _check_audio(audio, model):
  if not isinstance(model, ColaHearModel):
    raise ValueError(f"expected a model from hear_module.load_model, got {type(model).__name__}")
  dtype = audio.dtype if tf.is_tensor(audio) else np.asarray(audio).dtype
  if tf.as_dtype(dtype) != tf.float32:
    raise ValueError(f"audio must be float32 [n_sounds, n_samples] at {model.sample_rate} Hz, "
                     f"got dtype {tf.as_dtype(dtype).name}")
  audio = tf.convert_to_tensor(audio, tf.float32)
  if audio.shape.rank != 2:
    raise ValueError(f"audio must be float32 [n_sounds, n_samples] at {model.sample_rate} Hz, "
                     f"got shape {audio.shape}")
  if not bool(tf.reduce_all(tf.math.is_finite(audio))):
    raise ValueError("audio contains NaN or Inf values")
  return audio


def get_timestamp_embeddings(audio, model):
  """-> (embeddings float32 [n_sounds, n_frames, D], timestamps float32 ms [n_sounds, n_frames])."""
  audio = _check_audio(audio, model)
  n = int(audio.shape[0])
  if n == 0:
    frames = int(audio.shape[1]) * 1000 // model.sample_rate // 50 + 1
    return (tf.zeros([0, frames, model.timestamp_embedding_size]), tf.zeros([0, frames]))
  parts = [model.saved_model.timestamp_embeddings(audio[i:i + CLIPS_PER_CALL])
           for i in range(0, n, CLIPS_PER_CALL)]
  return tf.concat([p[0] for p in parts], 0), tf.concat([p[1] for p in parts], 0)


def get_scene_embeddings(audio, model):
  """-> float32 [n_sounds, D]."""
  audio = _check_audio(audio, model)
  n = int(audio.shape[0])
  if n == 0:
    return tf.zeros([0, model.scene_embedding_size])
  return tf.concat([model.saved_model.scene_embeddings(audio[i:i + CLIPS_PER_CALL])
                    for i in range(0, n, CLIPS_PER_CALL)], 0)
