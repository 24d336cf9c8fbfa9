"""Projection head, similarities, the contrastive loss, and global negatives."""
import math

import numpy as np
import pytest
import tensorflow as tf

from cola_tf import encoders
from cola_tf import model as model_lib
from conftest import in_fresh_process


def _tiny_encoder():
  return encoders.small_cnn.small_cnn((96, 64), channels=(4, 8))


def test_loss_and_accuracy_on_a_hand_computed_3x3_case():
  logits = tf.constant([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
  want = [
      -math.log(math.exp(2) / (math.exp(2) + 2)),
      -math.log(math.exp(1) / (1 + math.exp(1) + math.exp(3))),
      -math.log(1 / 3),
  ]
  np.testing.assert_allclose(model_lib.contrastive_loss(logits).numpy(), want, rtol=1e-6)
  np.testing.assert_array_equal(model_lib.contrastive_accuracy(logits).numpy(), [1, 0, 0])
  shifted = model_lib.contrastive_loss(logits, labels=tf.constant([0, 2, 1])).numpy()
  assert shifted[1] == pytest.approx(-math.log(math.exp(3) / (1 + math.exp(1) + math.exp(3))))


def test_head_embeddings_are_tanh_bounded_float32():
  m = model_lib.ColaModel(encoder=_tiny_encoder()).build_for((96, 64))
  z = m.embed(tf.random.normal([5, 96, 64]))
  assert z.shape == (5, 512) and z.dtype == tf.float32
  assert np.all(np.abs(z.numpy()) < 1.0)


def test_recipe_head_has_no_projection_bias_and_a_small_bilinear_init():
  m = model_lib.ColaModel(encoder=_tiny_encoder()).build_for((96, 64))
  assert m.projection.bias is None  # audax: Dense(512, use_bias=False)
  w = m.bilinear.kernel.numpy()
  assert w.shape == (512, 512) and abs(w.std() - 0.01) < 0.001  # audax: N(0, 0.01^2)


def test_recipe_head_initialiser_and_layer_norm_are_flax_defaults():
  """audax's head is flax's nn.Dense (lecun_normal: truncated normal, std sqrt(1 / fan_in),
  cut at 2 / 0.8796 of it) and nn.LayerNorm (epsilon 1e-6); Keras' own defaults
  (glorot_uniform, 1e-3) remain options."""
  m = model_lib.ColaModel(encoder=_tiny_encoder()).build_for((96, 64))
  k = m.projection.kernel.numpy()
  std = math.sqrt(1 / k.shape[0])
  assert k.std() == pytest.approx(std, rel=0.05)
  assert np.abs(k).max() <= 2 * std / 0.87962566 + 1e-6 and np.abs(k).max() > 1.9 * std
  assert m.layer_norm.epsilon == 1e-6
  keras = model_lib.ColaModel(encoder=_tiny_encoder(), projection_initializer="glorot_uniform",
                              layer_norm_epsilon=1e-3).build_for((96, 64))
  limit = math.sqrt(6 / sum(keras.projection.kernel.shape))
  assert np.abs(keras.projection.kernel.numpy()).max() <= limit
  assert keras.layer_norm.epsilon == 1e-3
  wide = model_lib.ColaModel(encoder=_tiny_encoder(), projection_bias=True,
                             bilinear_init_stddev=None).build_for((96, 64))
  assert wide.projection.bias is not None
  assert abs(wide.bilinear.kernel.numpy().std() - 0.01) > 0.02  # Glorot: ~0.044 for 512x512


def test_cosine_temperature_really_scales_the_logits():
  enc = _tiny_encoder()
  warm = model_lib.ColaModel(encoder=enc, similarity="cosine", temperature=0.5).build_for((96, 64))
  cold = model_lib.ColaModel(encoder=enc, similarity="cosine", temperature=0.1)
  cold.build_for((96, 64))
  cold.projection.set_weights(warm.projection.get_weights())
  cold.layer_norm.set_weights(warm.layer_norm.get_weights())
  x = tf.random.normal([4, 96, 64])
  lw, lc = warm((x, x)).numpy(), cold((x, x)).numpy()
  np.testing.assert_allclose(lc, 5.0 * lw, rtol=1e-5, atol=1e-5)
  assert np.all(np.abs(lw) <= 2.0 + 1e-5)  # |cos| / 0.5
  loss_w = model_lib.contrastive_loss(tf.constant(lw)).numpy()
  loss_c = model_lib.contrastive_loss(tf.constant(lc)).numpy()
  assert not np.allclose(loss_w, loss_c)


def test_temperature_with_bilinear_is_an_error_and_cosine_needs_one():
  with pytest.raises(ValueError, match="no effect with bilinear"):
    model_lib.ColaModel(encoder=_tiny_encoder(), similarity="bilinear", temperature=0.1)
  with pytest.raises(ValueError, match="needs a temperature"):
    model_lib.ColaModel(encoder=_tiny_encoder(), similarity="cosine")
  with pytest.raises(ValueError, match="similarity"):
    model_lib.ColaModel(encoder=_tiny_encoder(), similarity="dot")


def test_global_negatives_gather_positives_from_every_replica():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    m = model_lib.ColaModel(encoder=_tiny_encoder()).build_for((96, 64))
  anchors = tf.random.normal([8, 512])
  positives = tf.random.normal([8, 512])
  full = m.logits(tf.tanh(anchors), tf.tanh(positives)).numpy()

  def run(negatives):
    def fn(ctx):
      i = ctx.replica_id_in_sync_group
      a = tf.tanh(anchors[i * 4:(i + 1) * 4])
      p = tf.tanh(positives[i * 4:(i + 1) * 4])
      return model_lib.replica_logits_and_labels(m, a, p, negatives)
    return strategy.run(tf.function(lambda: fn(tf.distribute.get_replica_context())))

  logits, labels = run("global")
  got = [strategy.experimental_local_results(t) for t in (logits, labels)]
  for i in range(2):
    assert got[0][i].shape == (4, 8)  # 4 anchors x the 8 positives of the global batch
    np.testing.assert_allclose(got[0][i].numpy(), full[i * 4:(i + 1) * 4], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[1][i].numpy(), np.arange(4) + 4 * i)
  logits, labels = run("replica")
  for i, (lg, lb) in enumerate(zip(*(strategy.experimental_local_results(t)
                                     for t in (logits, labels)))):
    assert lg.shape == (4, 4)
    np.testing.assert_array_equal(lb.numpy(), np.arange(4))
    np.testing.assert_allclose(lg.numpy(), full[i * 4:(i + 1) * 4, i * 4:(i + 1) * 4],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # a process of its own
def test_a_step_embeds_anchors_and_positives_in_one_batch_with_per_replica_statistics():
  in_fresh_process("test_model", "one_batch_per_replica_statistics")


def one_batch_per_replica_statistics():
  """audax's step: anchors and positives go through the encoder as one batch (they share
  BatchNorm statistics) and each TPU core normalises with its own statistics. A BatchNorm-
  only encoder on 2 replicas, anchors x and positives x + 2, replica 0 at x = 1 and replica 1
  at x = 11: one batch per replica gives each a batch variance of 1, so the running variance
  stays 1 (synchronised statistics: 26 -> 1.25; anchors and positives apart: 0 -> 0.98);
  the running mean moves by (1 - momentum) x 7 (apart: 0.139 instead of 0.07)."""
  import tf_keras
  from cola_tf.runtime import optimization
  from cola_tf.runtime import trainer as trainer_lib
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  with strategy.scope():
    inputs = tf_keras.Input((8, 4))
    x = tf_keras.layers.Reshape((8, 4, 1))(inputs)
    norm = tf_keras.layers.BatchNormalization(momentum=0.99)
    features = tf_keras.layers.GlobalAveragePooling2D()(norm(x))
    model = model_lib.ColaModel(encoder=tf_keras.Model(inputs, features)).build_for((8, 4))
    optimizer, _ = optimization.build_adamw(10, 10, learning_rate=0.0, warmup_steps=0)
  level = np.array([1.0, 1.0, 11.0, 11.0], np.float32)[:, None, None] * np.ones((4, 8, 4),
                                                                              np.float32)
  batch = {"anchor": level, "positive": level + 2.0}
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat())
  trainer = trainer_lib.ColaTrainer(strategy, model, optimizer, dataset, global_batch_size=4)
  trainer.train(tf.constant(1))
  assert float(norm.moving_mean.numpy()[0]) == pytest.approx(0.01 * 7.0, rel=1e-3)
  assert float(norm.moving_variance.numpy()[0]) == pytest.approx(1.0, abs=2e-3)


def test_the_train_step_compiles_with_xla():
  """`train.jit_compile = True`, the way a TPU runs the step: small_cnn's step compiles and
  trains (one replica; several replicas with XLA are refused, with the reason)."""
  import tf_keras
  from cola_tf.runtime import optimization
  from cola_tf.runtime import trainer as trainer_lib
  from cola_tf.runtime import training
  tf_keras.utils.set_random_seed(0)
  model = model_lib.ColaModel(encoder=_tiny_encoder()).build_for((96, 64))
  optimizer, _ = optimization.build_adamw(10, 10, learning_rate=1e-3, warmup_steps=0)
  batch = {"anchor": tf.random.normal([8, 96, 64]), "positive": tf.random.normal([8, 96, 64])}
  trainer = trainer_lib.ColaTrainer(tf.distribute.get_strategy(), model, optimizer,
                                    tf.data.Dataset.from_tensors(batch).repeat(),
                                    global_batch_size=8, jit_compile=True)
  first = float(trainer.train(tf.constant(2))["loss"])
  assert np.isfinite(first) and int(optimizer.iterations.numpy()) == 2
  with pytest.raises(ValueError, match="jit_compile = True with 2 replicas"):
    training._check_settings("float32", "replica", 8, 2, True)  # pylint: disable=protected-access
