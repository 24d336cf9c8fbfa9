"""Encoders: log-mel [batch, frames, mels] -> pooled features [batch, dim].

* `small_cnn`: a light VGG-style CNN that trains usefully on 2 CPU cores (tiny.gin).
* `efficientnet_b0` .. `efficientnet_b7`: keras.applications EfficientNet, random init, on
  1-channel input. Its built-in Rescaling(1/255) is turned into the identity: it exists for
  uint8 images, while a log-mel has O(1-10) values and the stem conv (no bias) feeds a
  BatchNorm whose epsilon would dominate at 1/255 scale.
  Its drop connect (Dropout with noise_shape (None, 1, 1, 1)) becomes our DropPath.
  `style='audax'` (the recipe) rebuilds it as audax's EfficientNet (torchvision's layout in
  flax): He-normal fan-in kernels (truncated), BatchNorm momentum 0.9 and epsilon 1e-5, no
  bias in the squeeze-excitation convs, 'SAME' padding for strided convs (keras.applications
  pads as if the frame count were even); `style='keras'` keeps keras.applications'. Every
  variant takes B0's BatchNorm values (audax's B5-B7 ask for others through a code path
  that cannot run: it never sets `use_running_average`).
* DropPath draws per-replica masks: each call's stateful seed (the same on every worker)
  has the global replica id folded in, so workers of a multi-worker job drop differently.
* `convnext_atto` .. `convnext_nano` (ConvNeXt V2's CPU-scale depths and widths, V1 blocks)
  and `convnext_tiny` .. `convnext_xlarge`: the keras.applications ConvNeXt architecture rebuilt
  with DepthwiseConv2D for the 7x7 depthwise conv (the shipped grouped Conv2D is ~90x slower
  on CPU) and a DropPath that works inside tf.function and tf.distribute (the shipped
  StochasticDepth does not). The layer order and weight shapes match keras.applications, so
  weights move between them with `convnext_weights_from_keras` / `convnext_weights_to_keras`.
  `style='audax'` (the recipe) initialises as audax's ConvNeXt: every conv and Dense kernel
  truncated-normal (2 std) x 0.02, biases 0, and uses flax's default tanh GELU;
  `style='keras'`: keras.applications' Glorot-uniform kernels and exact (erf) GELU.
  `float32_blocks=True` runs every ConvNeXt block (and the pooling) in float32 under a
  mixed-precision policy, leaving the stem and the downsampling layers to the policy: the
  precision audax's ConvNeXt ran with `half_precision` (its block's `dtype = jnp.float32`
  is a class attribute, not a flax field, so the model's bfloat16 never reaches it).
"""
import dataclasses
import functools
from typing import Callable

import gin
import numpy as np
import tensorflow as tf
import tf_keras

layers = tf_keras.layers

POOLINGS = ("max", "mean", "mean_std")
STYLES = ("audax", "keras")
# audax's ConvNeXt kernels: jax.random.truncated_normal(-2, 2) * 0.02, i.e. N(0, 0.02^2)
# truncated at 2 std (Keras' TruncatedNormal draws the same distribution).
CONVNEXT_AUDAX_STDDEV = 0.02
# audax's EfficientNet (torchvision in flax): kaiming_normal = He, fan-in, truncated normal.
EFFICIENTNET_AUDAX_BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)


def _check_style(style):
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


def small_cnn(input_shape, pooling="max", channels=(24, 48, 96, 192), drop_path_rate=0.0):
  """A stride-2 Conv3x3 stem, then stages of MaxPool -> Conv3x3-BN-ReLU -> residual 1x1
  conv branch with DropPath. ~180 pairs/s for a COLA step at batch 64 on 2 CPU cores."""
  inputs, x = log_mel_input(input_shape)
  rates = np.linspace(0.0, drop_path_rate, len(channels))
  for i, ch in enumerate(channels):
    if i > 0:
      x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = layers.Conv2D(ch, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False,
                      name=f"block{i}_conv")(x)
    x = layers.BatchNormalization(name=f"block{i}_bn")(x)
    x = layers.ReLU(name=f"block{i}_relu")(x)
    if i > 0:
      y = layers.Conv2D(ch, 1, use_bias=False, name=f"block{i}_mix")(x)
      y = layers.BatchNormalization(name=f"block{i}_mix_bn")(y)
      y = DropPath(rates[i], name=f"block{i}_drop_path")(y)
      x = layers.ReLU(name=f"block{i}_relu2")(layers.Add(name=f"block{i}_add")([x, y]))
  features = pool(x, pooling, "pool")
  return tf_keras.Model(inputs, features, name="small_cnn")


_EFFICIENTNETS = {f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)}


def _as_audax_efficientnet(layer, config):
  """Layer config changes that make a keras.applications EfficientNet layer audax's."""
  if isinstance(layer, layers.ZeroPadding2D):  # the 'SAME' padding below replaces it
    return layers.Activation("linear", name=layer.name)
  if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and config["strides"] != (1, 1):
    config["padding"] = "same"
  if isinstance(layer, layers.DepthwiseConv2D):
    # Keras' (k, k, C, 1) kernel has fan-out k * k: the same He variance as flax's
    # (k, k, 1, C) kernel's fan-in, which keras.applications already uses.
    return layer.__class__.from_config(config)
  if isinstance(layer, layers.Conv2D):
    config["kernel_initializer"] = tf_keras.initializers.serialize(
        tf_keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"))
    if layer.name.endswith(("se_reduce", "se_expand")):
      config["use_bias"] = False  # audax's SqueezeAndExcitation convs have none
  if isinstance(layer, layers.BatchNormalization):
    config.update(EFFICIENTNET_AUDAX_BATCH_NORM)
  return layer.__class__.from_config(config)


def _rebuilt_efficientnet(backbone, style):
  """keras.applications' drop connect is Dropout(noise_shape=(None, 1, 1, 1)): the same
  per-example drop and 1/keep scaling as DropPath, whose masks also differ per replica.
  style 'audax' also applies `_as_audax_efficientnet`."""
  def clone(layer):
    if isinstance(layer, layers.Dropout) and layer.noise_shape == (None, 1, 1, 1):
      return DropPath(layer.rate, name=layer.name)
    if style == "audax":
      return _as_audax_efficientnet(layer, layer.get_config())
    return layer.__class__.from_config(layer.get_config())

  return tf_keras.models.clone_model(backbone, clone_function=clone)


def efficientnet(variant, input_shape, pooling="max", drop_path_rate=0.2, style="audax",
                 blocks_args=None):
  """keras.applications EfficientNet on 1-channel log-mel, random init; returns features.
  `blocks_args` replaces the variant's blocks (keras.applications' format; tests use it)."""
  _check_style(style)
  builder = getattr(tf_keras.applications, _EFFICIENTNETS[variant])
  backbone = builder(include_top=False, weights=None, input_shape=(None, input_shape[-1], 1),
                     pooling=None, drop_connect_rate=drop_path_rate,
                     **({"blocks_args": blocks_args} if blocks_args else {}))
  backbone = _rebuilt_efficientnet(backbone, style)
  rescalings = [l for l in backbone.layers if isinstance(l, layers.Rescaling)]
  if len(rescalings) != 1:
    raise RuntimeError(f"expected one Rescaling layer in {variant}, found {len(rescalings)}")
  rescalings[0].scale = 1.0  # log-mel input, not uint8 pixels (see module docstring)
  inputs, x = log_mel_input(input_shape)
  features = pool(backbone(x), pooling, "pool")
  return tf_keras.Model(inputs, features, name=variant)


CONVNEXT_CONFIGS = {
    # ConvNeXt V2's smallest sizes (depths and widths; our blocks stay V1's, as the recipe's):
    # CPU-scale members of the recipe's encoder family.
    "convnext_atto": ([2, 2, 6, 2], [40, 80, 160, 320]),
    "convnext_femto": ([2, 2, 6, 2], [48, 96, 192, 384]),
    "convnext_pico": ([2, 2, 6, 2], [64, 128, 256, 512]),
    "convnext_nano": ([2, 2, 8, 2], [80, 160, 320, 640]),
    "convnext_tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "convnext_small": ([3, 3, 27, 3], [96, 192, 384, 768]),
    "convnext_base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
    "convnext_large": ([3, 3, 27, 3], [192, 384, 768, 1536]),
    "convnext_xlarge": ([3, 3, 27, 3], [256, 512, 1024, 2048]),
}
DEPTHWISE_IMPLS = ("depthwise", "grouped")


def _convnext_layer_kwargs(style):
  """Initialisers of ConvNeXt's conv and Dense layers per style (biases: zeros in both). A
  config, not an instance: each layer deserialises its own (an unseeded Keras initializer
  instance called twice returns the same values)."""
  if style == "keras":
    return {}, {}
  init = {"class_name": "TruncatedNormal", "config": {"stddev": CONVNEXT_AUDAX_STDDEV}}
  return {"kernel_initializer": init}, {"depthwise_initializer": init}


def _convnext_block(x, name, dim, drop_rate, style, options):
  """One block: depthwise 7x7 -> LayerNorm -> Dense 4 dim -> GELU -> Dense dim -> layer
  scale -> DropPath, plus the shortcut. options: layer_scale_init_value, depthwise_impl,
  block_dtype (None: the policy's)."""
  conv_init, depthwise_init = _convnext_layer_kwargs(style)
  dtype = options["block_dtype"]
  if options["depthwise_impl"] == "depthwise":
    y = layers.DepthwiseConv2D(7, padding="same", name=name + "_depthwise_conv", dtype=dtype,
                               **depthwise_init)(x)
  else:
    y = layers.Conv2D(dim, 7, padding="same", groups=dim, name=name + "_depthwise_conv",
                      dtype=dtype, **conv_init)(x)
  y = layers.LayerNormalization(epsilon=1e-6, name=name + "_layernorm", dtype=dtype)(y)
  y = layers.Dense(4 * dim, name=name + "_pointwise_conv_1", dtype=dtype, **conv_init)(y)
  y = GELU(style == "audax", name=name + "_gelu", dtype=dtype)(y)
  y = layers.Dense(dim, name=name + "_pointwise_conv_2", dtype=dtype, **conv_init)(y)
  if options["layer_scale_init_value"] is not None:
    y = LayerScale(options["layer_scale_init_value"], dim, name=name + "_layer_scale",
                   dtype=dtype)(y)
  y = DropPath(drop_rate, name=name + "_drop_path", dtype=dtype)(y)
  return layers.Add(name=name + "_add", dtype=dtype)([x, y])


def convnext(variant, input_shape, pooling="mean", drop_path_rate=0.0,
             layer_scale_init_value=1e-6, depthwise_impl="depthwise", features_layernorm=False,
             style="audax", float32_blocks=False, depths=None, dims=None):
  """ConvNeXt as keras.applications builds it (include_top=False), with a working DropPath.

  Feature = pool(last stage), as audax's encoder (num_classes=None) gives it;
  `features_layernorm=True` adds the LayerNorm after pooling that keras.applications has.
  `depthwise_impl='grouped'` reproduces the slow grouped Conv2D (for comparison only).
  `style` and `float32_blocks`: see the module docstring. `depths` / `dims` replace the
  variant's (tests build small ones).
  """
  if depthwise_impl not in DEPTHWISE_IMPLS:
    raise ValueError(f"depthwise_impl must be one of {DEPTHWISE_IMPLS}, got {depthwise_impl!r}")
  _check_style(style)
  depths = depths or CONVNEXT_CONFIGS[variant][0]
  dims = dims or CONVNEXT_CONFIGS[variant][1]
  conv_init, _ = _convnext_layer_kwargs(style)
  options = dict(layer_scale_init_value=layer_scale_init_value, depthwise_impl=depthwise_impl,
                 block_dtype="float32" if float32_blocks else None)
  inputs, x = log_mel_input(input_shape)
  rates = np.linspace(0.0, drop_path_rate, sum(depths))
  block = 0
  for stage, (depth, dim) in enumerate(zip(depths, dims)):
    if stage == 0:
      x = layers.Conv2D(dim, 4, strides=4, name=f"{variant}_stem_conv", **conv_init)(x)
      x = layers.LayerNormalization(epsilon=1e-6, name=f"{variant}_stem_layernorm")(x)
    else:
      x = layers.LayerNormalization(epsilon=1e-6,
                                    name=f"{variant}_downsampling_layernorm_{stage - 1}")(x)
      x = layers.Conv2D(dim, 2, strides=2, name=f"{variant}_downsampling_conv_{stage - 1}",
                        **conv_init)(x)
    for j in range(depth):
      x = _convnext_block(x, f"{variant}_stage_{stage}_block_{j}", dim, rates[block], style,
                          options)
      block += 1
  features = pool(x, pooling, "pool", dtype=options["block_dtype"])
  if features_layernorm:
    features = layers.LayerNormalization(epsilon=1e-6,
                                         name=f"{variant}_features_layernorm")(features)
  return tf_keras.Model(inputs, features, name=variant)


def _convert_depthwise(weights_in, model_like):
  """Maps a weight list between grouped (k,k,1,C) and depthwise (k,k,C,1) kernels."""
  out = []
  for w in weights_in:
    w = np.asarray(w)
    if w.ndim == 4 and w.shape[0] == 7 and (w.shape[2] == 1) != (w.shape[3] == 1):
      w = np.transpose(w, (0, 1, 3, 2))
    out.append(w)
  shapes = [tuple(v.shape) for v in model_like.weights]
  got = [w.shape for w in out]
  if shapes != got:
    raise ValueError(f"ConvNeXt weight layouts differ: {len(shapes)} vs {len(got)} arrays")
  return out


def convnext_weights_from_keras(keras_model, model):
  """Loads a keras.applications ConvNeXt (include_top=False, pooling set) into `model`."""
  model.set_weights(_convert_depthwise(keras_model.get_weights(), model))


def convnext_weights_to_keras(model, keras_model):
  """The reverse of `convnext_weights_from_keras`."""
  keras_model.set_weights(_convert_depthwise(model.get_weights(), keras_model))


@dataclasses.dataclass(frozen=True)
class EncoderEntry:
  """A registered encoder: `builder(input_shape, pooling=..., drop_path_rate=..., **options)`
  returns a tf_keras.Model named as its registry key; `small` holds options that build a
  small version of it (the tests build every entry so)."""
  builder: Callable
  small: dict
  module: str


ENCODERS = {}  # name -> EncoderEntry: the one list of encoders


def register_encoder(name, builder, small=None):
  """Adds an encoder to the registry (see EncoderEntry); names are unique."""
  if name in ENCODERS:
    raise ValueError(f"register_encoder: {name!r} is registered already")
  ENCODERS[name] = EncoderEntry(builder, dict(small or {}),
                                getattr(builder, "__module__", None) or __name__)


def _variant(builder, variant):
  built = functools.partial(builder, variant)
  built.__module__ = builder.__module__
  return built


# A small EfficientNet for the tests: the stem, one plain and one strided, repeated block.
SMALL_EFFICIENTNET_BLOCKS = (
    {"kernel_size": 3, "repeats": 1, "filters_in": 32, "filters_out": 16, "expand_ratio": 1,
     "id_skip": True, "strides": 1, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 2, "filters_in": 16, "filters_out": 24, "expand_ratio": 2,
     "id_skip": True, "strides": 2, "se_ratio": 0.25})
register_encoder("small_cnn", small_cnn, small={"channels": (4, 8)})
for _name in _EFFICIENTNETS:
  register_encoder(_name, _variant(efficientnet, _name),
                   small={"blocks_args": [dict(b) for b in SMALL_EFFICIENTNET_BLOCKS]})
for _name in CONVNEXT_CONFIGS:
  register_encoder(_name, _variant(convnext, _name),
                   small={"depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32)})


@gin.configurable(denylist=["input_shape"])
def build_encoder(name="small_cnn", input_shape=(100, 64), pooling="max", drop_path_rate=0.0,
                  **kwargs):
  """Builds the registered encoder called `name` (`ENCODERS`): [batch, frames, mels] ->
  [batch, features]. The encoder takes any number of frames (input_shape[0] is the training
  crop's, for reference).

  `drop_path_rate` is the stochastic-depth rate (EfficientNet's drop_connect_rate, ConvNeXt's
  and small_cnn's DropPath); it is applied in training and off at inference. Other keyword
  arguments go to the builder (EfficientNet and ConvNeXt take `style`, 'audax' by default,
  or 'keras'; see the module docstring).
  """
  if name not in ENCODERS:
    raise ValueError(f"build_encoder: unknown encoder {name!r}; choose one of "
                     f"{', '.join(ENCODERS)}")
  input_shape = tuple(int(d) for d in input_shape)
  model = ENCODERS[name].builder(input_shape, pooling=pooling, drop_path_rate=drop_path_rate,
                                 **kwargs)
  if model.name != name:  # exports record it; heareval's result folders are keyed by it
    raise ValueError(f"build_encoder: the builder of {name!r} returned a model named "
                     f"{model.name!r}; name it as its registry key")
  return model
