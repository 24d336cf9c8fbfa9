"""COLA: encoder -> projection (Dense 512 -> LayerNorm -> tanh) -> similarity -> InfoNCE.

The head, similarity and loss always run in float32, also under a mixed-precision policy.
"""
import gin
import tensorflow as tf
import tf_keras

from cola_tf import encoders

SIMILARITIES = ("bilinear", "cosine")
NEGATIVES = ("replica", "global")


@gin.configurable
class ColaModel(tf_keras.Model):
  """COLA contrastive model.

  similarity='bilinear' (the paper's): logits = a W p^T; it has no temperature (W learns the
  scale), so passing one is an error rather than a silently ignored flag.
  similarity='cosine': logits = cos(a, p) / temperature; a temperature is required.
  projection_bias: a bias in the Dense projection (google-research has one, audax none).
  bilinear_init_stddev: W starts as N(0, stddev^2) (audax 0.01, google-research Keras'
  0.05); None: Glorot uniform. It sets the initial logit scale.
  projection_initializer: the Dense projection's kernel init, a Keras initializer name
  (audax: flax's default 'lecun_normal'; Keras' default 'glorot_uniform').
  layer_norm_epsilon: the head's LayerNorm epsilon (audax: flax's 1e-6; Keras' 1e-3).
  """

  def __init__(self, encoder=None, embedding_dim=512, similarity="bilinear",
               temperature=None, projection_bias=False, bilinear_init_stddev=0.01,
               projection_initializer="lecun_normal", layer_norm_epsilon=1e-6, name="cola"):
    super().__init__(name=name)
    if similarity not in SIMILARITIES:
      raise ValueError(f"ColaModel.similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if similarity == "bilinear" and temperature is not None:
      raise ValueError("ColaModel.temperature has no effect with bilinear similarity (the "
                       "bilinear matrix learns the logit scale); unset it or use "
                       "similarity='cosine'")
    if similarity == "cosine" and (temperature is None or temperature <= 0):
      raise ValueError(f"ColaModel: cosine similarity needs a temperature > 0, got {temperature}")
    self.encoder = encoder if encoder is not None else encoders.build_encoder()
    self.similarity = similarity
    self.temperature = None if temperature is None else float(temperature)
    self.embedding_dim = int(embedding_dim)
    self.projection = tf_keras.layers.Dense(embedding_dim, use_bias=projection_bias,
                                            kernel_initializer=projection_initializer,
                                            dtype="float32", name="projection")
    self.layer_norm = tf_keras.layers.LayerNormalization(epsilon=float(layer_norm_epsilon),
                                                         dtype="float32", name="layer_norm")
    if similarity == "bilinear":
      init = ("glorot_uniform" if bilinear_init_stddev is None else
              tf_keras.initializers.RandomNormal(stddev=float(bilinear_init_stddev)))
      self.bilinear = tf_keras.layers.Dense(embedding_dim, use_bias=False, dtype="float32",
                                            kernel_initializer=init, name="bilinear")

  def embed(self, log_mel, training=False):
    """[batch, frames, mels] -> float32 [batch, embedding_dim] in (-1, 1)."""
    features = tf.cast(self.encoder(log_mel, training=training), tf.float32)
    return tf.math.tanh(self.layer_norm(self.projection(features)))

  def logits(self, anchors, positives):
    """Similarity of each anchor [n, d] with every positive [m, d] -> [n, m] float32."""
    if self.similarity == "bilinear":
      return tf.matmul(self.bilinear(anchors), positives, transpose_b=True)
    a = tf.math.l2_normalize(anchors, axis=-1)
    p = tf.math.l2_normalize(positives, axis=-1)
    return tf.matmul(a, p, transpose_b=True) / self.temperature

  def call(self, inputs, training=False):
    anchors, positives = inputs
    return self.logits(self.embed(anchors, training), self.embed(positives, training))

  def build_for(self, input_shape):
    """Creates all variables for log-mel inputs of shape (frames, mels)."""
    x = tf.zeros((2,) + tuple(input_shape))
    self((x, x), training=False)
    return self


def contrastive_loss(logits, labels=None):
  """Per-example softmax cross-entropy; row i's positive is column labels[i] (default i)."""
  if labels is None:
    labels = tf.range(tf.shape(logits)[0])
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def contrastive_accuracy(logits, labels=None):
  """Per-example 1.0 where the positive scores highest among all candidates."""
  if labels is None:
    labels = tf.range(tf.shape(logits)[0])
  return tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)


def replica_logits_and_labels(model, anchors, positives, negatives="replica"):
  """Logits and labels inside a replica context.

  'replica': each replica scores its anchors against its own positives (b - 1 negatives).
  'global': positives are all-gathered across replicas first, so every anchor sees the
  whole global batch (global_batch - 1 negatives); gradients flow back through the gather.
  """
  if negatives not in NEGATIVES:
    raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
  local = tf.shape(anchors)[0]
  labels = tf.range(local)
  if negatives == "global":
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      positives = ctx.all_gather(positives, axis=0)
      labels = labels + tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
  return model.logits(anchors, positives), labels
