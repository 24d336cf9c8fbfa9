"""ConvNeXt: `convnext_atto` .. `convnext_nano` (ConvNeXt V2's CPU-scale depths and widths,
V1 blocks) and `convnext_tiny` .. `convnext_xlarge`.

The keras.applications ConvNeXt architecture rebuilt with DepthwiseConv2D for the 7x7
depthwise conv (the shipped grouped Conv2D is ~90x slower on CPU) and a DropPath that works
inside tf.function and tf.distribute (the shipped StochasticDepth does not). The layer order
and weight shapes match keras.applications, so weights move between them with
`convnext_weights_from_keras` / `convnext_weights_to_keras`. `style='audax'` (the recipe)
initialises as audax's ConvNeXt: every conv and Dense kernel truncated-normal (2 std) x 0.02,
biases 0, and uses flax's default tanh GELU; `style='keras'`: keras.applications'
Glorot-uniform kernels and exact (erf) GELU. `float32_blocks=True` runs every ConvNeXt block
(and the pooling) in float32 under a mixed-precision policy, leaving the stem and the
downsampling layers to the policy: the precision audax's ConvNeXt ran with `half_precision`
(its block's `dtype = jnp.float32` is a class attribute, not a flax field, so the model's
bfloat16 never reaches it); the downsampling LayerNorms then take the blocks' float32 output
as it is (flax's bf16 LayerNorm normalises its input in float32 and rounds only its result).
"""
import numpy as np
import tf_keras

from cola_tf.encoders.layers import GELU
from cola_tf.encoders.layers import DropPath
from cola_tf.encoders.layers import LayerScale
from cola_tf.encoders.layers import check_style
from cola_tf.encoders.layers import log_mel_input
from cola_tf.encoders.layers import pool

layers = tf_keras.layers

# audax's ConvNeXt kernels: jax.random.truncated_normal(-2, 2) * 0.02, i.e. N(0, 0.02^2)
# truncated at 2 std (Keras' TruncatedNormal draws the same distribution).
CONVNEXT_AUDAX_STDDEV = 0.02
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
# The benchmark's extra train-step rows: audax's precision scope, and the slow grouped conv.
BENCHMARK_VARIANTS = {
    "float32_blocks": {"precision": "mixed_bfloat16", "float32_blocks": True},
    "grouped": {"precision": "float32", "depthwise_impl": "grouped"},
}


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
  check_style(style)
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
      # With float32 blocks under a bfloat16 policy, flax's bf16 LayerNorm normalises the
      # float32 block output and rounds its result; Keras' would round its input first. A
      # float32 LayerNorm before the bf16 conv rounds where flax does.
      x = layers.LayerNormalization(epsilon=1e-6, dtype=options["block_dtype"],
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
