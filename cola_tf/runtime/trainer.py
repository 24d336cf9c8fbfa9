"""The one COLA train step: `ColaTrainer`, an `orbit.StandardTrainer` (also timed by the
train-step benchmark), and the gradient all-reduce + global-norm clipping it applies."""
import orbit
import tensorflow as tf
import tf_keras

from cola_tf import model as model_lib


def aggregated_gradients(gradients, clip_norm):
  """Sums per-replica gradients over all replicas, then clips by the global norm: the
  clipping sees the whole batch's gradient (Model Garden's AdamW clips each replica's part
  before its own all-reduce)."""
  ctx = tf.distribute.get_replica_context()
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    gradients = ctx.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
  if clip_norm > 0:
    gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
  return gradients


class ColaTrainer(orbit.StandardTrainer):
  """The one COLA train step, run `num_steps` times per call of `train(num_steps)`.

  A step embeds [anchors; positives] in one batch (shared BatchNorm statistics, as both
  references), scores them (replica or global negatives), sums the gradients over replicas,
  clips them by the global norm if the optimizer asks for it, and applies AdamW.
  `train()` returns {'loss', 'contrastive_accuracy'} averaged over the call's steps.
  """

  def __init__(self, strategy, model, optimizer, dataset, negatives="replica",
               global_batch_size=64, jit_compile=False):
    self.strategy = strategy
    self.model = model
    self.optimizer = optimizer
    with self.strategy.scope():
      self.loss = tf_keras.metrics.Mean("loss")
      self.accuracy = tf_keras.metrics.Mean("contrastive_accuracy")
    self._step = self._make_step(negatives, global_batch_size)
    if jit_compile:
      self._step = tf.function(self._step, jit_compile=True)
    super().__init__(dataset, options=orbit.StandardTrainerOptions(use_tf_while_loop=True))

  def _make_step(self, negatives, global_batch_size):
    model, optimizer = self.model, self.optimizer
    clip_norm = float(getattr(optimizer, "gradient_clip_norm", 0.0))

    def step(batch):
      anchors, positives = batch["anchor"], batch["positive"]
      local = tf.shape(anchors)[0]
      with tf.GradientTape() as tape:
        embeddings = model.embed(tf.concat([anchors, positives], axis=0), training=True)
        logits, labels = model_lib.replica_logits_and_labels(
            model, embeddings[:local], embeddings[local:], negatives)
        per_example = model_lib.contrastive_loss(logits, labels)
        loss = tf.reduce_sum(per_example) / global_batch_size
      variables = model.trainable_variables
      gradients = aggregated_gradients(tape.gradient(loss, variables), clip_norm)
      optimizer.apply_gradients(zip(gradients, variables),
                                experimental_aggregate_gradients=False)
      self.loss.update_state(per_example)
      self.accuracy.update_state(model_lib.contrastive_accuracy(logits, labels))

    return step

  def train_loop_begin(self):
    self.loss.reset_state()
    self.accuracy.reset_state()

  def train_step(self, iterator):
    self.strategy.run(self._step, args=(next(iterator),))

  def train_loop_end(self):
    return {"loss": self.loss.result(), "contrastive_accuracy": self.accuracy.result()}
