"""EfficientNet-B0 .. B7 (`efficientnet_b0` .. `efficientnet_b7`): keras.applications'
EfficientNet, random init, on 1-channel input.

Its built-in Rescaling(1/255) is turned into the identity: it exists for uint8 images, while a
log-mel has O(1-10) values and the stem conv (no bias) feeds a BatchNorm whose epsilon would
dominate at 1/255 scale. Its drop connect (Dropout with noise_shape (None, 1, 1, 1)) becomes
our DropPath. `style='audax'` (the recipe) rebuilds it as audax's EfficientNet (torchvision's
layout in flax): He-normal fan-in kernels (truncated), BatchNorm momentum 0.9 and epsilon
1e-5 (running variance from the biased batch variance, as flax), no bias in the
squeeze-excitation convs, 'SAME' padding for strided convs
(keras.applications pads as if the frame count were even); `style='keras'` keeps
keras.applications'. Every variant takes B0's BatchNorm values (audax's B5-B7 ask for others
through a code path that cannot run: it never sets `use_running_average`).
"""
import tf_keras
# The general builder behind keras.applications.EfficientNetB0..B7 (width and depth taken).
from tf_keras.src.applications import efficientnet as _keras_efficientnet

from cola_tf.encoders.layers import DropPath
from cola_tf.encoders.layers import check_style
from cola_tf.encoders.layers import log_mel_input
from cola_tf.encoders.layers import pool

layers = tf_keras.layers

# audax's EfficientNet (torchvision in flax): kaiming_normal = He, fan-in, truncated normal.
EFFICIENTNET_AUDAX_BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)
VARIANTS = {f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)}


def _as_audax_efficientnet(layer, config, fused_batch_norm):
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
    # flax moves its running variance with the batch's biased variance; TensorFlow's fused
    # kernel with the unbiased one (x n / (n - 1): 2e-4 relative at the last stage's 4096
    # values per channel and core). The unfused layer computes flax's (0.8x the step on CPU).
    config.update(EFFICIENTNET_AUDAX_BATCH_NORM, fused=None if fused_batch_norm else False)
  return layer.__class__.from_config(config)


def _rebuilt_efficientnet(backbone, style, fused_batch_norm):
  """keras.applications' drop connect is Dropout(noise_shape=(None, 1, 1, 1)): the same
  per-example drop and 1/keep scaling as DropPath, whose masks also differ per replica.
  style 'audax' also applies `_as_audax_efficientnet`."""
  def clone(layer):
    if isinstance(layer, layers.Dropout) and layer.noise_shape == (None, 1, 1, 1):
      return DropPath(layer.rate, name=layer.name)
    if style == "audax":
      return _as_audax_efficientnet(layer, layer.get_config(), fused_batch_norm)
    return layer.__class__.from_config(layer.get_config())

  return tf_keras.models.clone_model(backbone, clone_function=clone)


def efficientnet(variant, input_shape, pooling="max", drop_path_rate=0.2, style="audax",
                 blocks_args=None, width_depth=None, fused_batch_norm=False):
  """keras.applications EfficientNet on 1-channel log-mel, random init; returns features.
  `blocks_args` replaces the variant's blocks (keras.applications' format; tests use it);
  `width_depth` = (width, depth) replaces the variant's multipliers over B0 (keras.applications
  and torchvision, hence audax, round channels and repeats alike: the audax fixtures' small
  EfficientNet is B0 at (0.25, 0.5)). `fused_batch_norm` (style 'audax'): TensorFlow's fused
  BatchNorm kernel, 1.25x faster training on CPU, whose running variance takes the unbiased
  batch variance (flax's: the biased one; style 'keras' is always fused)."""
  check_style(style)
  kwargs = dict(include_top=False, weights=None, input_shape=(None, input_shape[-1], 1),
                pooling=None, drop_connect_rate=drop_path_rate,
                **({"blocks_args": blocks_args} if blocks_args else {}))
  if width_depth:
    backbone = _keras_efficientnet.EfficientNet(*width_depth, 224, 0.2,
                                                model_name=VARIANTS[variant].lower(), **kwargs)
  else:
    backbone = getattr(tf_keras.applications, VARIANTS[variant])(**kwargs)
  backbone = _rebuilt_efficientnet(backbone, style, fused_batch_norm)
  rescalings = [l for l in backbone.layers if isinstance(l, layers.Rescaling)]
  if len(rescalings) != 1:
    raise RuntimeError(f"expected one Rescaling layer in {variant}, found {len(rescalings)}")
  rescalings[0].scale = 1.0  # log-mel input, not uint8 pixels (see module docstring)
  inputs, x = log_mel_input(input_shape)
  features = pool(backbone(x), pooling, "pool")
  return tf_keras.Model(inputs, features, name=variant)


# A small EfficientNet for the tests: the stem, one plain and one strided, repeated block.
SMALL_EFFICIENTNET_BLOCKS = (
    {"kernel_size": 3, "repeats": 1, "filters_in": 32, "filters_out": 16, "expand_ratio": 1,
     "id_skip": True, "strides": 1, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 2, "filters_in": 16, "filters_out": 24, "expand_ratio": 2,
     "id_skip": True, "strides": 2, "se_ratio": 0.25})
