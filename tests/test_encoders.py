"""Encoders: shapes, DropPath that really drops, ConvNeXt equal to keras.applications."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from cola_tf import encoders


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


@pytest.mark.parametrize("name", ["small_cnn", "convnext_tiny"])
def test_drop_path_is_applied_in_the_encoder_inside_a_distributed_step(name):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    enc = encoders.build_encoder(name, input_shape=(96, 64), drop_path_rate=0.5)
  x = tf.random.normal([4, 96, 64])
  rates = [l.rate for l in enc.layers if isinstance(l, encoders.DropPath)]
  assert rates and max(rates) == pytest.approx(0.5)

  @tf.function
  def step(training):
    return strategy.run(lambda: enc(x, training=training))

  infer_out = strategy.experimental_local_results(step(False))
  train_out = strategy.experimental_local_results(step(True))
  train_again = strategy.experimental_local_results(step(True))
  for t, t2, i in zip(train_out, train_again, infer_out):
    assert not np.allclose(t.numpy(), i.numpy())
    assert not np.allclose(t.numpy(), t2.numpy())  # a fresh random drop each call


def test_convnext_depthwise_equals_keras_applications_and_weights_move_both_ways():
  ours = encoders.build_encoder("convnext_tiny", input_shape=(96, 64), pooling="mean",
                                features_layernorm=True)
  keras_model = tf_keras.applications.ConvNeXtTiny(
      include_top=False, weights=None, input_shape=(96, 64, 1), pooling="avg",
      include_preprocessing=False)
  # Give layer scales a non-trivial value so every block contributes.
  keras_model.set_weights([w if w.ndim != 1 or "gamma" not in v.name else np.full_like(w, 0.5)
                           for w, v in zip(keras_model.get_weights(), keras_model.weights)])
  encoders.convnext_weights_from_keras(keras_model, ours)
  x = np.random.default_rng(0).standard_normal((2, 96, 64)).astype(np.float32)
  want = keras_model(x[..., None], training=False).numpy()
  np.testing.assert_allclose(ours(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)
  depthwise = [l for l in ours.layers if isinstance(l, tf_keras.layers.DepthwiseConv2D)]
  assert len(depthwise) == 18
  grouped = encoders.build_encoder("convnext_tiny", input_shape=(96, 64), pooling="mean",
                                   depthwise_impl="grouped", features_layernorm=True)
  encoders.convnext_weights_to_keras(ours, grouped)
  np.testing.assert_allclose(grouped(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)


def test_efficientnet_rescaling_is_identity_and_shapes():
  enc = encoders.build_encoder("efficientnet_b0", input_shape=(96, 64), pooling="max",
                               drop_path_rate=0.2)
  backbone = [l for l in enc.layers if isinstance(l, tf_keras.Model)][0]
  rescale = [l for l in backbone.layers if isinstance(l, tf_keras.layers.Rescaling)][0]
  assert rescale.scale == 1.0
  assert enc(tf.zeros([2, 96, 64])).shape == (2, 1280)
  drop_paths = [l for l in backbone.layers if isinstance(l, encoders.DropPath)]
  assert len(drop_paths) == 9 and 0.1 < max(l.rate for l in drop_paths) <= 0.2  # per block
  assert not any(isinstance(l, tf_keras.layers.Dropout) for l in backbone.layers)


def test_unknown_encoder_and_pooling_are_errors():
  with pytest.raises(ValueError, match="unknown encoder"):
    encoders.build_encoder("resnet50")
  with pytest.raises(ValueError, match="pooling"):
    encoders.build_encoder("small_cnn", pooling="attention")


def test_convnext_features_are_the_pooled_last_stage_as_audax():
  """audax's ConvNeXt with num_classes=None returns mean(last stage): no LayerNorm after."""
  enc = encoders.build_encoder("convnext_tiny", input_shape=(97, 64), pooling="mean")
  assert not any("features_layernorm" in l.name for l in enc.layers)
  last_stage = tf_keras.Model(enc.input, enc.get_layer("pool").input)
  x = np.random.default_rng(1).standard_normal((2, 97, 64)).astype(np.float32)
  np.testing.assert_allclose(enc(x).numpy(), last_stage(x).numpy().mean(axis=(1, 2)),
                             rtol=1e-5, atol=1e-5)
