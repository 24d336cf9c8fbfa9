r"""The frozen encoder (frontend + encoder + pooling) and its export as a SavedModel.

`export(model_dir, output, checkpoint=None, random_init_seed=None)` writes it (the command
line is `python -m cola_tf.export`); `random_init_seed` exports a fresh, untrained
initialisation of the run's encoder (the control arm of a linear probe: same architecture,
frontend and config).

The SavedModel needs TensorFlow alone to load (`tf.saved_model.load(OUT)`): no cola_tf, gin
or Keras code. Its functions take batched mono float32 audio at 16 kHz, [batch, samples]:

* `window_embeddings(windows)`: [n, window_samples] -> [n, D]: the training encoder applied
  to 0.96 s windows, exactly as to training crops (same waveform normalisation, frontend).
* `clip_embeddings(audio)`: -> [batch, D]: each whole clip is one model input (normalised
  and turned into one log-mel as a whole, then encoded and pooled), as audax's linear probe
  feeds 1 s Speech Commands clips (104 frames). Clips shorter than a window are zero-padded
  on both sides to one window. For short clips: memory grows with the clip's length.
* `clip_embeddings_training(audio)` (a function, not a signature): `clip_embeddings` with
  the encoder in training mode, updating the BatchNorm statistics in `encoder_state`
  (audax's probe).
* `timestamp_embeddings(audio)`: -> (embeddings [batch, frames, D], timestamps [batch, frames]
  in ms). Frame k is the window centred at k * hop (hop 50 ms), zero-padded past the ends of
  the clip; timestamps run from 0 to at most the clip's duration.
* `scene_embeddings(audio)`: -> [batch, D], the mean of the embeddings of 0.96 s windows that
  lie within the clip: starting at 0, 0.48 s, 0.96 s, ... while they fit, plus one ending
  at the clip's end (so a 1 s clip is 2 windows, neither padded). A clip shorter than a
  window is one window, zero-padded at the end (as training pads short clips).
* `timestamp_embeddings_fast(audio)`, `scene_embeddings_fast(audio)`: the same windows,
  shapes and timestamps from one encoder pass per clip (`cola_tf.export.encoder_frames`): close
  to the numbers above, not equal. Exported when the encoder's frames have a fixed stride
  (every registered encoder); the metadata's `fast_embeddings` says so.

With `waveform_normalization='l2_clip'` each clip is first scaled to unit L2 norm as a whole;
with 'l2_window' (the recipe) each window or clip input is, inside the frontend.
Windows are embedded `chunk_windows` at a time, so memory stays bounded for long audio.

Timestamp and scene embeddings take each window's log-mel from one STFT of the whole clip
(`FrozenEncoder._embed_windows_shared`): the timestamp hop (800 samples) and the scene hop
are multiples of the frontend's hop (160), so a window's interior frames are frames of the
clip; only its 7 edge frames (4 with 'centre_reflect', 2 with 'end_zero'), which see the
window's own padding, are computed per window, and 'l2_window' rescales the clip's mel power per window by the
window's 1 / ||window||^2 before the log. The numbers equal the per-window reference (each
window's waveform through the whole frontend) up to float rounding ('l2_window': ~1e-6 on
the log-mel; bit for bit otherwise). The references are exported too, as
`timestamp_embeddings_reference` and `scene_embeddings_reference` (functions, not
signatures). A frontend whose hop does not divide those hops uses the reference path.
`OUT/cola_metadata.json` records sample rate, sizes, hops, frontend parameters, encoder,
training step and the hash of the gin config.
"""
import hashlib
import os

import official.modeling.optimization  # noqa: F401  (before gin parses the config)
import gin
import tensorflow as tf
import tf_keras

from cola_tf.export import encoder_frames
from cola_tf import encoders
from cola_tf import frontend as frontend_lib
from cola_tf import model as model_lib
from cola_tf.runtime import configuration
from cola_tf.export import metadata as export_metadata
from cola_tf import files
from cola_tf.runtime import training  # noqa: F401  (registers every configurable the config names)
from cola_tf.data import pipeline

TIMESTAMP_HOP_MS = 50.0
SCENE_HOP_MS = 480.0
# Clip frames per STFT call of the shared-STFT path (over the batch): bounds its memory.
FRAMES_PER_CHUNK = 4096


class FrozenEncoder(tf.Module):
  """Frontend + encoder + pooling over windows, with its functions traced for export."""

  def __init__(self, frontend, encoder, window_samples, chunk_windows=256):
    super().__init__(name="cola_frozen_encoder")
    # Not tracked: the SavedModel keeps the traced functions and the variables they capture,
    # without the Keras objects (saving those traced every layer's call again: ~2x the time).
    object.__setattr__(self, "encoder", encoder)
    self.encoder_variables = list(encoder.variables)
    self._frontend = frontend
    self.window_samples = int(window_samples)
    self.embedding_size = int(encoder.output_shape[-1])
    self.sample_rate = frontend.sample_rate
    self.chunk_windows = int(chunk_windows)
    self.timestamp_hop = int(round(TIMESTAMP_HOP_MS / 1000 * self.sample_rate))
    self.scene_hop = int(round(SCENE_HOP_MS / 1000 * self.sample_rate))
    spec = tf.TensorSpec([None, None], tf.float32)
    self.window_embeddings = tf.function(
        self._window_embeddings, input_signature=[tf.TensorSpec([None, self.window_samples],
                                                                tf.float32)])
    self.shared_stft = self._shared_stft_applies()
    self.timestamp_embeddings = tf.function(self._timestamp_embeddings, input_signature=[spec])
    self.timestamp_embeddings_reference = tf.function(self._timestamp_embeddings_reference,
                                                      input_signature=[spec])
    self._frames = encoder_frames.EncoderFrames(frontend, encoder, window_samples,
                                                chunk_windows)
    self.fast_embeddings = (self._frames.applies
                            and self.timestamp_hop % frontend.hop_length == 0)
    if self.fast_embeddings:  # saving traces every tf.function with a signature
      self.timestamp_embeddings_fast = tf.function(self._timestamp_embeddings_fast,
                                                   input_signature=[spec])
      self.scene_embeddings_fast = tf.function(self._scene_embeddings_fast,
                                               input_signature=[spec])
    self.scene_embeddings = tf.function(self._scene_embeddings, input_signature=[spec])
    self.scene_embeddings_reference = tf.function(self._scene_embeddings_reference,
                                                  input_signature=[spec])
    self.clip_embeddings = tf.function(self._clip_embeddings, input_signature=[spec])
    self.clip_embeddings_training = tf.function(self._clip_embeddings_training,
                                                input_signature=[spec])
    # BatchNorm running statistics (and other non-trainable state), which
    # `clip_embeddings_training` updates: the linear probe's `--encoder_mode training` keeps
    # its best epoch's values.
    self.encoder_state = list(encoder.non_trainable_variables)

  def frontend_params(self):
    return self._frontend.params()

  def _shared_stft_applies(self):
    """Whether windows can take their interior frames from one STFT of the clip: window
    starts on the frontend's frame grid and windows with interior frames."""
    fe = self._frontend
    return (self.timestamp_hop % fe.hop_length == 0 and self.scene_hop % fe.hop_length == 0
            and self.window_samples % fe.hop_length == 0 and fe.frame_offset() <= 0
            and fe.edge_pieces(self.window_samples) is not None)

  def _window_embeddings(self, windows):
    features = self.encoder(self._frontend(windows), training=False)
    return tf.cast(features, tf.float32)

  def _embed_windows(self, audio, starts, front_pad):
    """Embeddings [batch, n, D] of the windows starting at `starts` (sample offsets into
    the clip padded with `front_pad` zeros in front and a window of zeros behind).

    The reference: each window's waveform is gathered and goes through the whole frontend."""
    audio = self._frontend.normalize_clip(audio)
    batch = tf.shape(audio)[0]
    padded = tf.pad(audio, [[0, 0], [front_pad, self.window_samples]])
    n = tf.shape(starts)[0]
    total = batch * n
    clip_of = tf.repeat(tf.range(batch), n)
    start_of = tf.tile(starts, [batch])
    flat = tf.reshape(padded, [-1])
    row = tf.shape(padded)[1]
    chunks = (total + self.chunk_windows - 1) // self.chunk_windows
    out = tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                         element_shape=tf.TensorShape([None, self.embedding_size]))
    offsets = tf.range(self.window_samples)
    for i in tf.range(chunks):
      lo = i * self.chunk_windows
      hi = tf.minimum(lo + self.chunk_windows, total)
      index = (clip_of[lo:hi] * row + start_of[lo:hi])[:, None] + offsets[None, :]
      out = out.write(i, self._window_embeddings(tf.gather(flat, index)))
    return tf.reshape(out.concat(), [batch, n, self.embedding_size])

  def _embed_windows_shared(self, audio, starts, front_pad):
    """`_embed_windows` (same arguments and numbers, up to float rounding; every start a
    multiple of the frontend's hop) from one STFT of each clip.

    A window's interior frames (`LogMelFrontend.interior_frames`: 93 of its 100) are frames
    of the padded clip itself, computed once for all windows; only its edge frames, which
    see the frontend's padding of the window, are computed from the window. 'l2_window'
    scales a window by a = 1 / ||window||, which scales its power spectrum, hence its mel
    power, by a^2 exactly: the clip's mel power is rescaled per window (a from the sums of
    squares of hop-sized blocks) before the log. 'l2_clip' scales the whole clip first, as
    the reference does; per-window standardisation ('per_window') follows the log, as in
    the frontend. So timestamps cost one STFT per clip plus 7 edge frames per window
    instead of 100 frames per window (the recipe's 'fft_reflect' framing).
    """
    fe = self._frontend
    hop, window = fe.hop_length, self.window_samples
    lo, hi = fe.interior_frames(window)
    head, tail_start = fe.edge_pieces(window)
    offset = fe.frame_offset()  # <= 0
    mels = fe.num_mel_bins
    audio = fe.normalize_clip(audio)
    batch = tf.shape(audio)[0]
    # Sample i of `signal` is sample i + offset of the padded clip of `_embed_windows`, so
    # its 'valid' frame m is frame j of the window starting at (m - j) * hop there.
    signal = tf.pad(audio, [[0, 0], [front_pad - offset, window]])
    row = tf.shape(signal)[1]
    n = tf.shape(starts)[0]
    num_frames = starts[-1] // hop + hi
    mel = tf.reshape(fe.valid_mel_power(signal, num_frames, FRAMES_PER_CHUNK), [-1, mels])
    if fe.waveform_normalization == "l2_window":
      block_ss = fe.block_sum_squares(signal[:, -offset:], (row + offset) // hop)
      index = (starts // hop)[:, None] + tf.range(window // hop)[None, :]
      sum_squares = tf.reshape(tf.reduce_sum(tf.gather(block_ss, index, axis=1), -1), [-1])
    else:
      sum_squares = tf.zeros([batch * n])
    total = batch * n
    clip_of = tf.repeat(tf.range(batch), n)
    start_of = tf.tile(starts, [batch])
    flat = tf.reshape(signal, [-1])
    chunks = (total + self.chunk_windows - 1) // self.chunk_windows
    out = tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                         element_shape=tf.TensorShape([None, self.embedding_size]))
    interior = tf.range(lo, hi)
    for i in tf.range(chunks):
      first = i * self.chunk_windows
      last = tf.minimum(first + self.chunk_windows, total)
      clips, window_starts = clip_of[first:last], start_of[first:last]
      frames = tf.gather(mel, (clips * num_frames + window_starts // hop)[:, None]
                         + interior[None, :])
      at = clips * row + window_starts - offset  # each window's first sample in `flat`
      head_mel, tail_mel = fe.edge_mel_power(
          tf.gather(flat, at[:, None] + tf.range(head)[None, :]),
          tf.gather(flat, at[:, None] + tf.range(tail_start, window)[None, :]), window)
      features = fe.features_from_mel_power(tf.concat([head_mel, frames, tail_mel], axis=1),
                                            sum_squares[first:last])
      out = out.write(i, tf.cast(self.encoder(features, training=False), tf.float32))
    return tf.reshape(out.concat(), [batch, n, self.embedding_size])

  def _timestamps(self, audio, embed):
    length = tf.shape(audio)[1]
    n = length // self.timestamp_hop + 1  # centres 0, hop, ..., <= duration
    centres = tf.range(n) * self.timestamp_hop
    # Window k covers [centre - half, centre + half) of the clip: start = centre in the
    # clip padded with half a window in front.
    embeddings = embed(audio, centres, self.window_samples // 2)
    stamps = tf.cast(centres, tf.float32) * (1000.0 / self.sample_rate)
    return embeddings, tf.tile(stamps[None, :], [tf.shape(audio)[0], 1])

  def _timestamp_embeddings(self, audio):
    """One STFT per clip (`_embed_windows_shared`) where the frontend allows it (the
    frontend's hop divides the window and the timestamp hop: all shipped configurations),
    else the reference."""
    return self._timestamps(audio, self._embed_windows_shared if self.shared_stft
                            else self._embed_windows)

  def _timestamp_embeddings_reference(self, audio):
    """The same numbers as `timestamp_embeddings`, each window through the whole frontend."""
    return self._timestamps(audio, self._embed_windows)

  def _timestamp_embeddings_fast(self, audio):
    """`timestamp_embeddings`' frames and shapes from one encoder pass per clip
    (`encoder_frames`): close to, not equal to, the exact numbers."""
    return self._timestamps(audio, self._frames.embed_windows)

  def _scene_embeddings_fast(self, audio):
    """`scene_embeddings` (the same windows) from one encoder pass per clip."""
    length = tf.shape(audio)[1]
    # The scene windows lie within the clip (one zero-padded window if shorter).
    end = tf.maximum(length, self.window_samples)
    return tf.reduce_mean(self._frames.embed_windows(audio, self.scene_starts(length), 0, end),
                          axis=1)

  def _scene_embeddings(self, audio):
    """Mean over the scene windows. With the shared STFT (as timestamps), except for a last
    window off the frontend's frame grid (its start, the clip's length minus a window, is
    not a multiple of the hop), which goes through the whole frontend alone."""
    starts = self.scene_starts(tf.shape(audio)[1])
    if not self.shared_stft:
      return tf.reduce_mean(self._embed_windows(audio, starts, 0), axis=1)

    def last_alone():  # only runs when there are 2 or more windows (the first starts at 0)
      return tf.concat([self._embed_windows_shared(audio, starts[:-1], 0),
                        self._embed_windows(audio, starts[-1:], 0)], axis=1)

    embeddings = tf.cond(tf.equal(starts[-1] % self._frontend.hop_length, 0),
                         lambda: self._embed_windows_shared(audio, starts, 0), last_alone)
    return tf.reduce_mean(embeddings, axis=1)

  def _scene_embeddings_reference(self, audio):
    """The same numbers as `scene_embeddings`, each window through the whole frontend."""
    return tf.reduce_mean(self._embed_windows(audio, self.scene_starts(tf.shape(audio)[1]), 0),
                          axis=1)

  def scene_starts(self, length):
    """Start offsets of the scene windows of a clip of `length` samples (see module doc)."""
    last = tf.maximum(length - self.window_samples, 0)
    n = (last + self.scene_hop - 1) // self.scene_hop + 1
    return tf.minimum(tf.range(n) * self.scene_hop, last)

  def _clip_inputs(self, audio):
    return self._frontend.clip_input(audio, self.window_samples)

  def _clip_embeddings(self, audio):
    return self._window_embeddings(self._clip_inputs(audio))

  def _clip_embeddings_training(self, audio):
    """`clip_embeddings` with the encoder in training mode (batch statistics, drop path;
    BatchNorm running statistics updated), as audax's linear probe step runs it."""
    features = self.encoder(self._frontend(self._clip_inputs(audio)), training=True)
    return tf.cast(features, tf.float32)


def load_trained(model_dir, checkpoint=None, random_init_seed=None):
  """(frontend, model, window_samples, step, checkpoint path) from a training model_dir.

  With random_init_seed, no checkpoint is read: a fresh initialisation seeded with it (step 0).
  """
  gin.clear_config()
  configuration.parse_gin([], [], model_dir)
  if random_init_seed is not None:
    tf_keras.utils.set_random_seed(random_init_seed)
  frontend, model, window_samples = configured_model()
  if random_init_seed is not None:
    return frontend, model, window_samples, 0, f"random init (seed {random_init_seed})"
  path = checkpoint or tf.train.latest_checkpoint(model_dir)
  if path is None:
    raise ValueError(f"export: no checkpoint in {model_dir}")
  ckpt = tf.train.Checkpoint(model=model)
  ckpt.restore(path).expect_partial().assert_existing_objects_matched()
  step = int(path.rsplit("-", 1)[1]) if "-" in os.path.basename(path) else -1
  return frontend, model, window_samples, step, path


def configured_model(**model_kwargs):
  """(frontend, built float32 ColaModel, window samples) as the parsed gin config defines
  them (`model_kwargs` override ColaModel's bindings)."""
  frontend = frontend_lib.LogMelFrontend()
  crop_seconds = gin.query_parameter("train.crop_seconds")
  shape = configuration.model_input_shape(frontend, crop_seconds)
  tf_keras.mixed_precision.set_global_policy("float32")  # export runs in float32
  model = model_lib.ColaModel(encoder=encoders.build_encoder(input_shape=shape), **model_kwargs)
  model.build_for(shape)
  return frontend, model, int(round(crop_seconds * frontend.sample_rate))


def check_export_request(model_dir, output, checkpoint, random_init_seed, overwrite):
  """ValueError (one line) when an export request is wrong or would silently replace an
  export: checked before any work."""
  if checkpoint and random_init_seed is not None:
    raise ValueError("export: give --checkpoint or --random_init_seed, not both")
  if not tf.io.gfile.exists(os.path.join(model_dir, configuration.OPERATIVE_CONFIG)):
    raise ValueError(f"export: {model_dir} holds no {configuration.OPERATIVE_CONFIG}: not a "
                     "training run's model_dir (or the run never started)")
  if checkpoint and not tf.io.gfile.exists(checkpoint + ".index"):
    raise ValueError(f"export: --checkpoint {checkpoint}: no such checkpoint (no "
                     f"{os.path.basename(checkpoint)}.index)")
  if output is None and (checkpoint or random_init_seed is not None):
    what = "a random initialisation" if random_init_seed is not None else checkpoint
    raise ValueError(f"export: {what} would replace the run's export {model_dir}/export; "
                     "pass --output")
  target = output or os.path.join(model_dir, "export")
  if tf.io.gfile.exists(target) and not overwrite:
    raise ValueError(f"export: {target} exists; pass --overwrite to replace it (or another "
                     "--output)")


def export(model_dir, output, checkpoint=None, chunk_windows=256, random_init_seed=None):
  """Writes the SavedModel of a training run (its latest or a given checkpoint, or a seeded
  random init) and its metadata to `output`; returns the metadata."""
  if checkpoint and random_init_seed is not None:
    raise ValueError("export: give a checkpoint or a random_init_seed, not both")
  frontend, model, window_samples, step, path = load_trained(model_dir, checkpoint,
                                                             random_init_seed)
  config = gin.config_str()
  module = FrozenEncoder(frontend, model.encoder, window_samples, chunk_windows)
  return save(module, output, {
      "training_positive_noise_stddev": _bound("pair_dataset.positive_noise_stddev",
                                             pipeline.POSITIVE_NOISE_STDDEV),
      "training_step": step, "checkpoint": path,
      "gin_config_sha1": hashlib.sha1(config.encode()).hexdigest()})


def save(module, output, run_metadata=None):
  """Writes a FrozenEncoder as a SavedModel with its metadata (`run_metadata`: what the
  training run adds) to `output`; returns the metadata.

  Local folders are replaced atomically (written beside, then renamed). Object stores
  (gs://, any '://' path) cannot rename folders, so there the SavedModel is written in place
  and `cola_metadata.json` last: an export without it is incomplete, and every reader
  (hear_module, the linear probe) refuses it.
  """
  in_place = files.is_url(output)
  target = output if in_place else output.rstrip("/") + ".tmp-export"
  if tf.io.gfile.exists(target):
    tf.io.gfile.rmtree(target)
  try:
    tf.saved_model.save(module, target, signatures={
        "serving_default": module.scene_embeddings,
        "scene_embeddings": module.scene_embeddings,
        "timestamp_embeddings": module.timestamp_embeddings,
        "clip_embeddings": module.clip_embeddings,
        **({"timestamp_embeddings_fast": module.timestamp_embeddings_fast,
            "scene_embeddings_fast": module.scene_embeddings_fast}
           if module.fast_embeddings else {}),
    })
  except BaseException:  # a failed save (disk full, a signal) leaves no staging folder
    if not in_place and tf.io.gfile.exists(target):
      tf.io.gfile.rmtree(target)
    raise
  metadata = {
      "format": "cola_tf frozen encoder v1",
      "sample_rate": module.sample_rate,
      "embedding_size": module.embedding_size,
      "scene_embedding_size": module.embedding_size,
      "timestamp_embedding_size": module.embedding_size,
      "window_samples": module.window_samples,
      "timestamp_hop_ms": TIMESTAMP_HOP_MS,
      "fast_embeddings": module.fast_embeddings,
      "scene_hop_ms": SCENE_HOP_MS,
      "scene_pooling": "mean over 0.96 s windows within the clip, starting every 0.48 s, "
                       "the last ending at the clip's end",
      "frontend": module.frontend_params(),
      "encoder": module.encoder.name,
      "training_step": -1, "checkpoint": None,
      **(run_metadata or {}),
      "weights_sha256": export_metadata.weights_sha256(module.encoder.weights),
  }
  export_metadata.write(target, metadata)
  if not in_place:
    if tf.io.gfile.exists(output):
      tf.io.gfile.rmtree(output)
    tf.io.gfile.rename(target, output)
  return metadata


def _bound(binding, default):
  """The operative config's value for `binding`, or the function's default if unbound."""
  try:
    return gin.query_parameter(binding)
  except ValueError:
    return default
