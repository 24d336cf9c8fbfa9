"""Layers every encoder shares: the log-mel input, poolings (and `split_at_pool`, which the
fast embeddings use), DropPath (stochastic depth drawn per replica), GELU, LayerScale, and the
style check of builders that follow audax or keras.applications."""
import tensorflow as tf
import tf_keras

layers = tf_keras.layers

POOLINGS = ("max", "mean", "mean_std")
STYLES = ("audax", "keras")


def check_style(style):
  if style not in STYLES:
    raise ValueError(f"build_encoder.style must be one of {STYLES}, got {style!r}")


class GELU(layers.Layer):
  """GELU, exact (erf, keras.applications) or the tanh approximation (flax's nn.gelu)."""

  def __init__(self, approximate, **kwargs):
    super().__init__(**kwargs)
    self.approximate = bool(approximate)

  def call(self, x):
    return tf.nn.gelu(x, approximate=self.approximate)

  def get_config(self):
    return {**super().get_config(), "approximate": self.approximate}


class DropPath(layers.Layer):
  """Stochastic depth: drops the residual branch per example, scaled by 1/keep in training."""

  def __init__(self, rate, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"DropPath rate must be in [0, 1), got {rate}")
    self.rate = float(rate)

  @tf.autograph.experimental.do_not_convert  # `training` is a Python bool: no conversion
  def call(self, x, training=None):
    if not training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    # Every worker runs the same graph with the same seeds, so a stateful draw alone would
    # give every replica the same masks: fold the global replica id into each call's seed.
    ctx = tf.distribute.get_replica_context()
    replica = ctx.replica_id_in_sync_group if ctx is not None else 0
    seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    seed += tf.stack([0, tf.cast(replica, tf.int32)])
    mask = tf.floor(keep + tf.random.stateless_uniform(shape, seed=seed))
    return x / tf.cast(keep, x.dtype) * tf.cast(mask, x.dtype)

  def get_config(self):
    return {**super().get_config(), "rate": self.rate}


class LayerScale(layers.Layer):
  """Per-channel learnable scale (same weight as keras.applications' LayerScale)."""

  def __init__(self, init_value, dim, **kwargs):
    super().__init__(**kwargs)
    self.init_value, self.dim = float(init_value), int(dim)

  def build(self, input_shape):
    self.gamma = self.add_weight(name="gamma", shape=(self.dim,),
                                 initializer=tf_keras.initializers.Constant(self.init_value))

  def call(self, x):
    return x * tf.cast(self.gamma, x.dtype)

  def get_config(self):
    return {**super().get_config(), "init_value": self.init_value, "dim": self.dim}


class StatisticsPooling(layers.Layer):
  """[batch, time, freq, channels] -> [batch, 2 channels]: the mean over frequency, then its
  mean and standard deviation over time (x-vector statistics pooling)."""

  def call(self, x):
    frames = tf.reduce_mean(tf.cast(x, tf.float32), axis=2)
    mean, variance = tf.nn.moments(frames, axes=[1])
    return tf.cast(tf.concat([mean, tf.sqrt(variance + 1e-5)], axis=-1), self.compute_dtype)


def pool(x, pooling, name, dtype=None):
  """'max' or 'mean' over time and frequency, or 'mean_std' (`StatisticsPooling`: twice the
  channels)."""
  if pooling not in POOLINGS:
    raise ValueError(f"encoder pooling must be one of {POOLINGS}, got {pooling!r}")
  if pooling == "max":
    return layers.GlobalMaxPooling2D(name=name, dtype=dtype)(x)
  if pooling == "mean_std":
    return StatisticsPooling(name=name, dtype=dtype)(x)
  return layers.GlobalAveragePooling2D(name=name, dtype=dtype)(x)


def split_at_pool(encoder):
  """(trunk, reduce_frequency, head) of a registered encoder, with
  encoder(x) == head(reduce_frequency(trunk(x))):
  * trunk: a Keras model from the log-mel to the feature map [batch, time, freq, channels]
    that the encoder's layer 'pool' pools (its time axis: the encoder's frames);
  * reduce_frequency: the map pooled over frequency as 'pool' pools it first (max for
    'max', mean otherwise), keeping the axis: [batch, time, 1, channels];
  * head: 'pool' and the layers after it, on such a map of any number of frames.
  Max of maxima and mean of equal-count means are the global max and mean, and
  `StatisticsPooling` averages over frequency first, so the identity holds exactly."""
  pool_layer = encoder.get_layer("pool")
  trunk = tf_keras.Model(encoder.inputs, pool_layer.input, name=f"{encoder.name}_trunk")
  after = encoder.layers[encoder.layers.index(pool_layer):]
  reduce = (tf.reduce_max if isinstance(pool_layer, layers.GlobalMaxPooling2D)
            else tf.reduce_mean)

  def reduce_frequency(feature_map):
    return reduce(feature_map, axis=2, keepdims=True)

  def head(feature_map):
    for layer in after:
      feature_map = layer(feature_map)
    return feature_map

  return trunk, reduce_frequency, head


def log_mel_input(input_shape):
  """(Keras input [batch, frames, mels], the same as an image [batch, frames, mels, 1]):
  any number of frames, so training crops (100) and whole probe clips (104) share weights."""
  mels = int(input_shape[-1])
  inputs = layers.Input(shape=(None, mels), name="log_mel")
  return inputs, layers.Reshape((-1, mels, 1), name="add_channel")(inputs)
