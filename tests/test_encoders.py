"""Encoders: shapes, DropPath that really drops, ConvNeXt equal to keras.applications, and
audax's initialisers, GELU, norms, padding and precision scope against their definitions."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from cola_tf.export import encoder_frames
from cola_tf import encoders
from cola_tf import frontend as frontend_lib
from cola_tf.export import frozen_encoder
import hear_module
from conftest import in_fresh_process


def throwaway_encoder(input_shape, pooling="max", drop_path_rate=0.0, width=4):
  """An encoder that exists only in this test module, added through the registry alone:
  every test parametrized over the registry runs on it too."""
  inputs, x = encoders.log_mel_input(input_shape)
  x = tf_keras.layers.Conv2D(width, 3, strides=2, padding="same", name="conv")(x)
  y = encoders.DropPath(drop_path_rate, name="drop_path")(tf_keras.layers.Conv2D(
      width, 1, name="mix")(x))
  x = tf_keras.layers.Add(name="add")([x, y])
  return tf_keras.Model(inputs, encoders.pool(x, pooling, "pool"), name="throwaway_test_encoder")


encoders.register_encoder("throwaway_test_encoder", throwaway_encoder, small={"width": 3})
REGISTERED = list(encoders.ENCODERS)


def _one_per_builder():
  """The first registered name of each builder function (EfficientNet B0..B7 share one)."""
  seen = {}
  for name, entry in encoders.ENCODERS.items():
    seen.setdefault(getattr(entry.builder, "func", entry.builder), name)
  return list(seen.values())


def _slow_unless(names, keep):
  """`names` as parameters, slow-marked unless in `keep`: the edit loop (`-m "not slow"`)
  builds each builder's first registered variant, CI every variant."""
  return [n if n in keep else pytest.param(n, marks=pytest.mark.slow) for n in names]


def _small(name, **kwargs):
  return encoders.build_encoder(name, input_shape=(100, 64), **encoders.ENCODERS[name].small,
                                **kwargs)


@pytest.mark.parametrize("name", _slow_unless(REGISTERED, _one_per_builder()))
def test_every_registered_encoder(name):
  """At a small width: named as its key; any number of frames (training crops, probe clips
  of either framing); DropPath present and drawn per replica; builds under mixed_bfloat16."""
  enc = _small(name, drop_path_rate=0.3)
  assert enc.name == name
  dim = int(enc.output_shape[-1])
  for frames in (97, 100, 101, 104):
    assert enc(tf.zeros([2, frames, 64])).shape == (2, dim), frames
  assert any(isinstance(l, encoders.DropPath) and l.rate > 0 for l in all_layers(enc))
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    replicated = _small(name, drop_path_rate=0.5)
  x = tf.random.stateless_normal([8, 100, 64], seed=[1, 2])
  outs = strategy.experimental_local_results(strategy.run(
      tf.function(lambda: replicated(x, training=True))))
  assert not np.array_equal(outs[0].numpy(), outs[1].numpy()), "same drop path per replica"
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    half = _small(name)
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  assert np.isfinite(tf.cast(half(tf.ones([1, 100, 64])), tf.float32).numpy()).all()


@pytest.mark.parametrize("name", _slow_unless(_one_per_builder(),
                                               ("small_cnn", "throwaway_test_encoder")))
def test_every_encoder_builder_exports_and_embeds_through_hear_module(name, tmp_path):
  """The SavedModel export and hear_module, once per builder (its variants differ only in
  sizes, which the test above covers): scene and timestamp embeddings of the right size."""
  enc = _small(name)
  module = frozen_encoder.FrozenEncoder(frontend_lib.LogMelFrontend(), enc, 15360)
  assert frozen_encoder.save(module, str(tmp_path / "export"))["encoder"] == name
  audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 20000)).astype(np.float32)
  dim = int(enc.output_shape[-1])
  for fast in (False, True):  # every builder's encoders have the one-pass mode
    model = hear_module.load_model(str(tmp_path / "export"), fast=fast)
    assert hear_module.get_scene_embeddings(audio, model).shape == (2, dim)
    assert hear_module.get_timestamp_embeddings(audio, model)[0].shape == (2, 26, dim)


@pytest.mark.parametrize("pooling", encoders.POOLINGS)
@pytest.mark.parametrize("name", _one_per_builder())
def test_split_at_pool_recomposes_the_encoder(name, pooling):
  """trunk -> frequency pooling -> head is the encoder (what the one-pass embeddings use),
  and the trunk's frames have a fixed stride."""
  enc = _small(name, pooling=pooling)
  trunk, reduce_frequency, head = encoders.split_at_pool(enc)
  x = tf.random.stateless_normal([3, 128, 64], seed=[4, 5])
  np.testing.assert_allclose(head(reduce_frequency(trunk(x))).numpy(), enc(x).numpy(),
                             rtol=1e-5, atol=1e-5)
  stride = encoder_frames.time_stride(trunk, 64)
  assert stride and trunk(x).shape[1] * stride == 128


def test_drop_path_training_differs_from_inference():
  layer = encoders.DropPath(0.5)
  x = tf.ones([256, 3, 3, 2])
  np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
  y = layer(x, training=True).numpy()
  per_example = y.reshape(256, -1)
  assert set(np.unique(per_example)) <= {0.0, 2.0}  # whole examples dropped, rest rescaled
  assert np.all(per_example.min(1) == per_example.max(1))
  assert 0.3 < (per_example[:, 0] == 0).mean() < 0.7
  with pytest.raises(ValueError):
    encoders.DropPath(1.0)


def drop_path_applied_on_two_replicas(*names):
  """(Run in a fresh process: see conftest.in_fresh_process.)"""
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  for name in names:
    with strategy.scope():
      enc = encoders.build_encoder(name, input_shape=(96, 64), drop_path_rate=0.5)
    x = tf.random.normal([4, 96, 64])
    rates = [l.rate for l in enc.layers if isinstance(l, encoders.DropPath)]
    assert rates and max(rates) == pytest.approx(0.5), name

    @tf.function
    def step(training):
      return strategy.run(lambda: enc(x, training=training))  # noqa: B023 (traced here)

    infer_out = strategy.experimental_local_results(step(False))
    train_out = strategy.experimental_local_results(step(True))
    train_again = strategy.experimental_local_results(step(True))
    for t, t2, i in zip(train_out, train_again, infer_out):
      assert not np.allclose(t.numpy(), i.numpy()), name
      assert not np.allclose(t.numpy(), t2.numpy()), name  # a fresh random drop each call


@pytest.mark.slow  # a process of its own
def test_drop_path_is_applied_in_the_encoder_inside_a_distributed_step():
  in_fresh_process("test_encoders", "drop_path_applied_on_two_replicas", "small_cnn",
                   "convnext_atto")  # ConvNeXt's blocks at the smallest size


def test_convnext_depthwise_equals_keras_applications_and_weights_move_both_ways():
  ours = encoders.build_encoder("convnext_tiny", input_shape=(96, 64), pooling="mean",
                                features_layernorm=True, style="keras")  # exact GELU
  keras_model = tf_keras.applications.ConvNeXtTiny(
      include_top=False, weights=None, input_shape=(96, 64, 1), pooling="avg",
      include_preprocessing=False)
  # Give layer scales a non-trivial value so every block contributes.
  keras_model.set_weights([w if w.ndim != 1 or "gamma" not in v.name else np.full_like(w, 0.5)
                           for w, v in zip(keras_model.get_weights(), keras_model.weights)])
  encoders.convnext.convnext_weights_from_keras(keras_model, ours)
  x = np.random.default_rng(0).standard_normal((2, 96, 64)).astype(np.float32)
  want = keras_model(x[..., None], training=False).numpy()
  np.testing.assert_allclose(ours(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)
  depthwise = [l for l in ours.layers if isinstance(l, tf_keras.layers.DepthwiseConv2D)]
  assert len(depthwise) == 18
  grouped = encoders.build_encoder("convnext_tiny", input_shape=(96, 64), pooling="mean",
                                   depthwise_impl="grouped", features_layernorm=True,
                                   style="keras")
  encoders.convnext.convnext_weights_to_keras(ours, grouped)
  np.testing.assert_allclose(grouped(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)


def test_efficientnet_rescaling_is_identity_and_shapes():
  enc = encoders.build_encoder("efficientnet_b0", input_shape=(96, 64), pooling="max",
                               drop_path_rate=0.2)
  backbone = [l for l in enc.layers if isinstance(l, tf_keras.Model)][0]
  rescale = [l for l in backbone.layers if isinstance(l, tf_keras.layers.Rescaling)][0]
  assert rescale.scale == 1.0
  assert enc(tf.zeros([2, 96, 64])).shape == (2, 1280)
  drop_paths = [l for l in backbone.layers if isinstance(l, encoders.DropPath)]
  # audax (torchvision): block b of 16 drops with 0.2 * b / 16, on the residual blocks only
  # (every block of a stage but its first).
  repeats = [1, 2, 2, 3, 3, 4, 1]
  firsts = np.cumsum([0] + repeats[:-1])
  residual = [first + i for first, r in zip(firsts, repeats) for i in range(1, r)]
  np.testing.assert_allclose([l.rate for l in drop_paths], [0.2 * b / 16 for b in residual],
                             rtol=1e-6)
  assert not any(isinstance(l, tf_keras.layers.Dropout) for l in backbone.layers)


def test_unknown_encoder_and_pooling_are_errors():
  with pytest.raises(ValueError, match="unknown encoder 'no such encoder'; choose one of "
                                       "small_cnn, efficientnet_b0"):
    encoders.build_encoder("no such encoder")
  with pytest.raises(ValueError, match="pooling"):
    encoders.build_encoder("small_cnn", pooling="no such pooling")
  with pytest.raises(ValueError, match="registered already"):
    encoders.register_encoder("small_cnn", encoders.small_cnn.small_cnn)
  encoders.ENCODERS["misnamed (test)"] = encoders.ENCODERS["small_cnn"]
  try:
    with pytest.raises(ValueError, match="returned a model named 'small_cnn'"):
      encoders.build_encoder("misnamed (test)", channels=(4, 8))
  finally:
    del encoders.ENCODERS["misnamed (test)"]


def test_convnext_features_are_the_pooled_last_stage_as_audax():
  """audax's ConvNeXt with num_classes=None returns mean(last stage): no LayerNorm after."""
  enc = encoders.build_encoder("convnext_tiny", input_shape=(97, 64), pooling="mean")
  assert not any("features_layernorm" in l.name for l in enc.layers)
  last_stage = tf_keras.Model(enc.input, enc.get_layer("pool").input)
  x = np.random.default_rng(1).standard_normal((2, 97, 64)).astype(np.float32)
  np.testing.assert_allclose(enc(x).numpy(), last_stage(x).numpy().mean(axis=(1, 2)),
                             rtol=1e-5, atol=1e-5)


def kernels(model):
  """(layer, kernel array) of every conv / Dense / depthwise kernel in a model and its
  nested models."""
  out = []
  for layer in model.layers:
    if isinstance(layer, tf_keras.Model):
      out += kernels(layer)
    elif isinstance(layer, tf_keras.layers.DepthwiseConv2D):
      out.append((layer, layer.depthwise_kernel.numpy()))
    elif isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense)):
      out.append((layer, layer.kernel.numpy()))
  return out


def all_layers(model):
  return [l for layer in model.layers
          for l in (all_layers(layer) if isinstance(layer, tf_keras.Model) else [layer])]


def numpy_gelu(x, approximate):
  if approximate:  # flax / jax nn.gelu's default
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
  return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_is_the_tanh_approximation_or_exact(approximate):
  x = np.linspace(-5, 5, 101).astype(np.float32)
  got = encoders.GELU(approximate)(x).numpy()
  np.testing.assert_allclose(got, numpy_gelu(x.astype(np.float64), approximate), atol=1e-6)
  other = numpy_gelu(x.astype(np.float64), not approximate)
  assert np.abs(got - other).max() > 1e-4  # the two differ measurably


def test_convnext_audax_style_initialisers_gelu_and_norms():
  """audax's ConvNeXt: every conv and MLP kernel N(0, 0.02^2) truncated at 2 std (std
  0.02 x 0.8796, |w| <= 0.04), biases 0, layer scale 1e-6, LayerNorm epsilon 1e-6, tanh
  GELU; style 'keras' keeps Glorot-uniform kernels and exact GELU."""
  tf_keras.utils.set_random_seed(0)
  enc = encoders.build_encoder("convnext_tiny", input_shape=(100, 64), pooling="mean")
  found = kernels(enc)
  assert len(found) == 1 + 3 + 18 * 3
  pooled = np.concatenate([k.ravel() for _, k in found])
  assert abs(pooled.mean()) < 1e-4 and np.abs(pooled).max() <= 0.04 + 1e-7
  assert pooled.std() == pytest.approx(0.02 * 0.87962566, rel=0.01)
  for layer, k in found:  # per layer too: truncated normal of the same width
    assert np.abs(k).max() <= 0.04 + 1e-7 and k.std() == pytest.approx(0.0176, rel=0.25), layer.name
  biases = [w.numpy() for w in enc.weights if w.name.endswith("bias:0") and "layernorm" not in w.name]
  assert biases and all(not b.any() for b in biases)
  scales = [w.numpy() for w in enc.weights if "layer_scale" in w.name]
  assert len(scales) == 18 and all(np.all(s == np.float32(1e-6)) for s in scales)
  norms = [l for l in enc.layers if isinstance(l, tf_keras.layers.LayerNormalization)]
  assert len(norms) == 1 + 3 + 18 and {l.epsilon for l in norms} == {1e-6}
  gelus = [l for l in enc.layers if isinstance(l, encoders.GELU)]
  assert len(gelus) == 18 and all(l.approximate for l in gelus)
  keras_style = encoders.build_encoder("convnext_tiny", input_shape=(100, 64), pooling="mean",
                                       style="keras")
  layer, k = kernels(keras_style)[-1]  # Dense 3072 -> 768: Glorot uniform
  limit = np.sqrt(6 / (k.shape[0] + k.shape[1]))
  assert np.abs(k).max() <= limit and np.abs(k).max() > 0.95 * limit, layer.name
  assert not any(l.approximate for l in keras_style.layers if isinstance(l, encoders.GELU))


def test_efficientnet_audax_style_initialisers_norms_and_padding():
  """audax's EfficientNet: He-normal fan-in kernels (truncated at 2 std: std sqrt(2 /
  fan_in), |w| <= 2 sqrt(2 / fan_in) / 0.8796; depthwise fan-in k x k), BatchNorm momentum
  0.9 and epsilon 1e-5, no squeeze-excitation biases, 'SAME' strided convs: 100 frames
  -> 50 -> 25 -> 13 -> 7 -> 4 at the top (ceil at each stride), 64 mels -> 2."""
  tf_keras.utils.set_random_seed(0)
  enc = encoders.build_encoder("efficientnet_b0", input_shape=(100, 64), pooling="mean",
                               drop_path_rate=0.2)
  layers = all_layers(enc)
  for layer, k in kernels(enc):
    fan_in = k.shape[0] * k.shape[1] * (1 if isinstance(
        layer, tf_keras.layers.DepthwiseConv2D) else k.shape[2])
    std = np.sqrt(2 / fan_in)
    assert np.abs(k).max() <= 2 * std / 0.87962566 + 1e-6, layer.name
    if k.size >= 4096:
      assert k.std() == pytest.approx(std, rel=0.1), layer.name
  norms = [l for l in layers if isinstance(l, tf_keras.layers.BatchNormalization)]
  assert len(norms) == 49 and {(l.momentum, l.epsilon) for l in norms} == {(0.9, 1e-5)}
  # flax's running variance (the biased batch variance): TensorFlow's fused kernel is off
  # unless asked for (the numbers: test_audax_equivalence's moved statistics).
  assert {l.fused for l in norms} == {False}
  fused = encoders.build_encoder("efficientnet_b0", input_shape=(100, 64),
                                 fused_batch_norm=True)
  assert {l.fused for l in all_layers(fused)
          if isinstance(l, tf_keras.layers.BatchNormalization)} == {True}
  se = [l for l in layers if l.name.endswith(("se_reduce", "se_expand"))]
  assert len(se) == 32 and not any(l.use_bias for l in se)
  assert not any(isinstance(l, tf_keras.layers.ZeroPadding2D) for l in layers)
  backbone = [l for l in enc.layers if isinstance(l, tf_keras.Model)][0]
  assert backbone(tf.zeros([1, 100, 64, 1])).shape == (1, 4, 2, 1280)
  keras_style = encoders.build_encoder("efficientnet_b0", input_shape=(100, 64), style="keras")
  kept = [l for l in all_layers(keras_style) if isinstance(l, tf_keras.layers.BatchNormalization)]
  assert {(l.momentum, l.epsilon) for l in kept} == {(0.99, 1e-3)}
  keras_backbone = [l for l in keras_style.layers if isinstance(l, tf_keras.Model)][0]
  assert keras_backbone(tf.zeros([1, 100, 64, 1])).shape == (1, 3, 2, 1280)  # odd sizes cut


def test_convnext_float32_blocks_is_audax_precision_scope():
  """Under mixed_bfloat16, float32_blocks leaves the stem and the downsampling convs in
  bfloat16 and runs every block, the downsampling LayerNorms (on the blocks' float32 output)
  and the pooling in float32 (audax's half_precision ConvNeXt; the numbers against audax's
  own bf16 forward: test_audax_equivalence.py)."""
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    scoped = encoders.build_encoder("convnext_tiny", input_shape=(100, 64), pooling="mean",
                                    float32_blocks=True)
    everywhere = encoders.build_encoder("convnext_tiny", input_shape=(100, 64),
                                        pooling="mean")
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  dtypes = {l.name: l.compute_dtype for l in scoped.layers if l.name.startswith("convnext")}
  for name, dtype in dtypes.items():
    want = "bfloat16" if ("stem" in name or "downsampling_conv" in name) else "float32"
    assert dtype == want, (name, dtype)
  assert scoped.get_layer("pool").compute_dtype == "float32"
  assert {l.compute_dtype for l in everywhere.layers if "_block_" in l.name} == {"bfloat16"}
  x = np.random.default_rng(2).standard_normal((2, 100, 64)).astype(np.float32)
  assert scoped(x).dtype == tf.float32


USER_MODULE = '''
import tf_keras
from cola_tf import encoders

def user_net(input_shape, pooling="max", drop_path_rate=0.0, width=4):
  inputs, x = encoders.log_mel_input(input_shape)
  x = tf_keras.layers.Conv2D(width, 3, strides=2, padding="same", name="conv")(x)
  return tf_keras.Model(inputs, encoders.pool(x, pooling, "pool"), name="user_net")

encoders.register_encoder("user_net", user_net, small={"width": 2})
'''


def test_an_encoder_in_the_users_own_module_is_registered_by_a_gin_import(
    tmp_path, monkeypatch, clean_gin):
  """`--gin_param "import my_module"` (or an `import` line in a gin file) registers an
  encoder that lives outside cola_tf before the trainer builds it; the operative config
  keeps the import, so a resume imports it again."""
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import training  # noqa: F401  pylint: disable=import-outside-toplevel
  (tmp_path / "my_user_encoders.py").write_text(USER_MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  try:
    configuration.parse_gin(["tiny"], ["import my_user_encoders",
                                       "build_encoder.name = 'user_net'"])
    assert encoders.build_encoder(input_shape=(100, 64)).name == "user_net"
    assert "import my_user_encoders" in gin.config_str()
  finally:
    encoders.ENCODERS.pop("user_net", None)
