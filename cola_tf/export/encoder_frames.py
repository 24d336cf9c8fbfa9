"""Fast timestamp embeddings: one encoder pass per clip, read off the encoder's time axis.

The exact timestamp embeddings (`FrozenEncoder.timestamp_embeddings`) run the encoder on a
0.96 s window every 50 ms, so each second of audio goes through it ~20 times. Here the
clip's log-mel goes through the encoder's trunk (everything before its pooling,
`encoders.split_at_pool`) once, in pieces of at most `frames_per_call` frames (over the
batch) with `margin` frames of context on each side, and the embedding at a timestamp is
the encoder's own pooling over the trunk frames of the 0.96 s window centred on it
(round(window frames / stride) of them). It differs from the exact embedding in:
* context: trunk frames near the window's edges see the audio beyond it (the exact
  window sees its own padding there);
* normalisation: each log-mel frame is normalised as the centre frame of a window around it
  (`LogMelFrontend.sliding_features`) rather than with its window's factor and statistics;
* time resolution: timestamps within one trunk stride of each other (160 ms for small_cnn,
  320 ms for EfficientNet and ConvNeXt) pool the same frames.
docs/hear.md has both modes' measured speed and scores.
"""
import tensorflow as tf

from cola_tf import encoders

# Log-mel frames (over the batch) per call into the trunk: bounds memory for long clips.
TRUNK_FRAMES_PER_CALL = 16384
# Log-mel frames (over the batch) per STFT call.
STFT_FRAMES_PER_CALL = 4096


def time_stride(trunk, num_mel_bins):
  """Log-mel frames per trunk frame, or None when the trunk's frame count is not the input's
  divided by a fixed stride."""
  counts = [trunk.compute_output_shape((1, n, num_mel_bins))[1] for n in (512, 1024)]
  if counts[0] and 512 % counts[0] == 0 and counts[1] == 2 * counts[0]:
    return 512 // counts[0]
  return None


class EncoderFrames:
  """The fast path of a frozen encoder (see the module docstring). `applies` is False for
  an encoder without a pooling layer named 'pool' (every registered encoder has one) or
  whose trunk has no fixed frame stride: its export has no fast embeddings."""

  def __init__(self, frontend, encoder, window_samples, chunk_windows=256,
               frames_per_call=TRUNK_FRAMES_PER_CALL):
    self._frontend = frontend
    self.window_samples = int(window_samples)
    self.window_frames = frontend.num_frames(window_samples)
    self.chunk_windows = int(chunk_windows)
    self.stride = None
    if any(layer.name == "pool" for layer in getattr(encoder, "layers", [])):
      self.trunk, self.reduce_frequency, self.head = encoders.split_at_pool(encoder)
      self.stride = time_stride(self.trunk, frontend.num_mel_bins)
    self.applies = bool(self.stride) and self.window_samples % frontend.hop_length == 0
    if self.applies:
      self.frames_pooled = max(1, round(self.window_frames / self.stride))
      self.margin = -(-self.window_frames // self.stride) * self.stride
      self.frames_per_call = max(int(frames_per_call) // self.stride * self.stride,
                                 self.stride)

  def embed_windows(self, audio, starts, front_pad, end=None):
    """Embeddings [batch, n, D] of the windows starting at `starts` (multiples of the
    frontend's hop) in the clip padded with `front_pad` zeros in front and zeros behind, as
    `FrozenEncoder._embed_windows` takes them, from one trunk pass over the padded clip.

    `end`: where the padded clip ends for the encoder (samples; default: the last window's
    end). Frames past it are neither encoded nor in any frame's normalisation window: scene
    windows lie within the clip, so its zero padding must not enter their statistics."""
    fe = self._frontend
    hop = fe.hop_length
    audio = fe.normalize_clip(audio)
    num_frames = (starts[-1] // hop + self.window_frames if end is None
                  else tf.maximum(end // hop, 1))
    # Frame t of the padded clip starts at its sample t * hop - reflect: the 'valid' frame t
    # of `signal` (the clip's padding is zeros, so is its reflection when front_pad is more
    # than `reflect`).
    reflect = fe.reflect_samples()
    tail = self.window_samples + (self.window_frames + 1) * hop + reflect + fe.window_length
    signal = tf.pad(audio, [[0, 0], [front_pad + reflect, tail]])
    mel = self._mel_power(signal, num_frames, front_pad + reflect, tf.shape(audio)[1])
    context = self._context_sum_squares(signal[:, reflect:], num_frames)
    frame_map = self._frame_map(fe.sliding_features(mel, context, self.window_frames))
    return self._pool_windows(frame_map, starts // hop + self.window_frames // 2,
                              tf.shape(audio)[0])

  def _mel_power(self, signal, num_frames, audio_start, audio_length):
    """`valid_mel_power` of `signal`'s first num_frames frames, computed only for the frames
    that overlap the audio at [audio_start, audio_start + audio_length): the others lie in
    the zero padding, whose power is exactly 0 (half a window at each end of a timestamp
    clip: a third of a 2 s clip's STFT)."""
    fe = self._frontend
    hop = fe.hop_length
    first = tf.clip_by_value((audio_start - fe.window_length) // hop + 1, 0, num_frames)
    last = tf.clip_by_value((audio_start + audio_length + hop - 1) // hop,
                            tf.minimum(first + 1, num_frames), num_frames)
    mel = fe.valid_mel_power(signal[:, first * hop:], last - first, STFT_FRAMES_PER_CALL)
    return tf.pad(mel, [[0, 0], [first, num_frames - last], [0, 0]])

  def _context_sum_squares(self, padded, num_frames):
    """[batch, num_frames]: the sum of squares of each frame's window: the one whose centre
    frame it is (samples k * hop .. k * hop + window for frame k + window_frames // 2),
    moved inside the num_frames frames near their ends (`sliding_features`' windows)."""
    fe = self._frontend
    blocks_per_window = self.window_samples // fe.hop_length
    block_ss = fe.block_sum_squares(padded, num_frames + blocks_per_window)
    cumulative = tf.pad(tf.cumsum(tf.cast(block_ss, tf.float64), axis=1), [[0, 0], [1, 0]])
    first, _ = fe.sliding_windows(num_frames, self.window_frames)
    last = first + blocks_per_window  # frame k's window starts at block k
    return tf.cast(tf.gather(cumulative, last, axis=1) - tf.gather(cumulative, first, axis=1),
                   tf.float32)

  def _frame_map(self, features):
    """Trunk frames of features [batch, frames, mels], pooled over frequency: [batch,
    frames / stride (rounded up), 1, channels], `frames_per_call` at a time. Each piece
    takes `margin` frames of real context on its inner sides; the clip's own ends get none,
    as an exact window's trunk sees only its padding there (and a short clip is encoded
    once, with no margin's worth of extra frames)."""
    stride, margin = self.stride, self.margin
    batch, frames = tf.shape(features)[0], tf.shape(features)[1]
    total = (frames + stride - 1) // stride * stride
    per_call = tf.maximum(self.frames_per_call // batch // stride * stride, stride)
    per_call = tf.minimum(per_call, total)
    calls = (total + per_call - 1) // per_call
    padded = tf.pad(features, [[0, 0], [0, total - frames], [0, 0]])
    out = tf.TensorArray(tf.float32, size=calls, infer_shape=False,
                         element_shape=tf.TensorShape([None, None, 1, None]))
    for i in tf.range(calls):
      lo, hi = i * per_call, tf.minimum((i + 1) * per_call, total)
      first, last = tf.maximum(lo - margin, 0), tf.minimum(hi + margin, total)
      trunk_frames = self.reduce_frequency(tf.cast(
          self.trunk(padded[:, first:last], training=False), tf.float32))
      kept = trunk_frames[:, (lo - first) // stride:(hi - first) // stride]
      out = out.write(i, tf.transpose(kept, [1, 0, 2, 3]))
    return tf.transpose(out.concat(), [1, 0, 2, 3])

  def _pool_windows(self, frame_map, centre_frames, batch):
    """The encoder's pooling over the `frames_pooled` trunk frames nearest each window's
    centre log-mel frame: [batch, n, D], `chunk_windows` windows at a time."""
    count = self.frames_pooled
    available = tf.shape(frame_map)[1]
    first = tf.cast(tf.round(tf.cast(centre_frames, tf.float32) / self.stride - count / 2),
                    tf.int32)
    first = tf.clip_by_value(first, 0, available - count)
    n = tf.shape(centre_frames)[0]
    total = batch * n
    index = (tf.repeat(tf.range(batch), n) * available + tf.tile(first, [batch]))[:, None] \
        + tf.range(count)[None, :]
    flat = tf.reshape(frame_map, [batch * available, 1, tf.shape(frame_map)[-1]])
    chunks = (total + self.chunk_windows - 1) // self.chunk_windows
    out = tf.TensorArray(tf.float32, size=chunks, infer_shape=False)
    for i in tf.range(chunks):
      lo = i * self.chunk_windows
      hi = tf.minimum(lo + self.chunk_windows, total)
      out = out.write(i, tf.cast(self.head(tf.gather(flat, index[lo:hi])), tf.float32))
    return tf.reshape(out.concat(), [batch, n, -1])
