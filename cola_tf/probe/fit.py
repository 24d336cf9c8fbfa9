"""Training the probe: one Dense layer on frozen features, AdamW with warmup + cosine, the
best validation epoch kept (audax's Speech Commands linear probe by default)."""
import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras

from cola_tf import logs
from cola_tf.runtime import optimization

log = logs.logger("linear_probe")


@dataclasses.dataclass
class ProbeSettings:
  """How the Dense layer is trained. Defaults: audax's Speech Commands linear probe."""
  epochs: int = 50
  batch_size: int = 512
  learning_rate: float = 1e-3
  reference_batch: int = 256  # peak LR = learning_rate * batch_size / reference_batch; 0: off
  warmup_epochs: float = 5.0
  weight_decay: float = 0.0
  standardize: bool = False
  seed: int = 0
  augment: str = "none"  # 'crop': a random 0.96 s window of every train clip, each epoch
  # 'training': the encoder runs as in audax's probe step (see protocol.TrainingModeEncoder)
  encoder_mode: str = "inference"
  # The Dense kernel's Keras initializer: flax's nn.Dense default in audax's probe.
  kernel_initializer: str = "lecun_normal"

  def peak_learning_rate(self):
    if not self.reference_batch:
      return self.learning_rate
    return self.learning_rate * self.batch_size / self.reference_batch


def check_settings(settings):
  """ValueError naming the flag for settings the probe cannot run with; returns them."""
  if settings.epochs < 1 or settings.batch_size < 1:
    raise ValueError(f"--epochs and --batch_size must be >= 1, got {settings.epochs}, "
                     f"{settings.batch_size}")
  if not 0 <= settings.warmup_epochs < settings.epochs:
    raise ValueError(f"--warmup_epochs ({settings.warmup_epochs}) must be in [0, --epochs "
                     f"({settings.epochs}))")
  return settings


def _standardiser(x_train, enabled):
  """x -> (x - mean) / std with the train split's statistics (identity when not enabled)."""
  mean, std = np.zeros(x_train.shape[1], np.float32), np.ones(x_train.shape[1], np.float32)
  if enabled:
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # constant (e.g. dead) features: centred only
  return lambda x: ((x - mean) / std).astype(np.float32)


def _epoch_trainer(layer, optimizer):
  """One epoch in a single graph call (Python overhead per step would dominate).
  Call with (x, y, batches [num_batches, batch] row indices) -> mean loss."""
  loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def train_epoch(x, y, batches):
    total = tf.constant(0.0)
    for i in tf.range(tf.shape(batches)[0]):
      with tf.GradientTape() as tape:
        loss = loss_fn(tf.gather(y, batches[i]), layer(tf.gather(x, batches[i])))
      optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables),
                                    layer.trainable_variables))
      total += loss
    return total / tf.cast(tf.shape(batches)[0], tf.float32)
  return train_epoch


def _layer_and_optimizer(settings, num_classes, dim, num_batches):
  tf_keras.utils.set_random_seed(settings.seed)
  layer = tf_keras.layers.Dense(num_classes, kernel_initializer=settings.kernel_initializer)
  layer.build((None, dim))
  optimizer, schedule = optimization.build_adamw(
      settings.epochs * num_batches, num_batches, learning_rate=settings.peak_learning_rate(),
      reference_batch_size=None, warmup_epochs=settings.warmup_epochs, warmup_steps=None,
      weight_decay=settings.weight_decay, end_learning_rate_fraction=0.0,
      gradient_clip_norm=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, no_weight_decay=())
  return layer, optimizer, schedule


def fit_probe(data, num_classes, settings=None, epoch_features=None, verbose=True):
  """Trains Dense(num_classes) on data['train'], keeps the best epoch on data['valid'].

  data: {split: (features [n, D], labels [n])}; settings: a ProbeSettings (default: the
  seed's protocol). epoch_features, if given, supplies features that change over the epochs
  (see protocol.CropAugmentation, protocol.TrainingModeEncoder): `.train(epoch)` fresh train
  features each epoch, `.valid()` the validation features after it (None: data['valid']),
  `.state()` what to keep with the best epoch, `.test(state)` the test features for it
  (None: data['test']). Returns a dict with best_epoch, valid_accuracy, test_accuracy,
  test predictions and the per-epoch history.
  """
  settings = check_settings(settings or ProbeSettings())
  x_train, y_train = data["train"]
  valid, test = data["valid"], data["test"]
  standardise = _standardiser(x_train, settings.standardize)
  num_batches = max(1, len(x_train) // settings.batch_size)  # the rest wait, as drop_remainder
  layer, optimizer, schedule = _layer_and_optimizer(settings, num_classes, x_train.shape[1],
                                                    num_batches)
  train_epoch = _epoch_trainer(layer, optimizer)

  def predict(x):
    return np.argmax(layer(standardise(x)).numpy(), axis=-1)

  rng, best, history = np.random.default_rng(settings.seed), (-1.0, 0, None, None), []
  for epoch in range(1, settings.epochs + 1):
    if epoch_features is not None:
      x_train, y_train = epoch_features.train(epoch)
    x = standardise(x_train)
    per_batch = len(x) // num_batches
    batches = rng.permutation(len(x))[:num_batches * per_batch]
    loss = float(train_epoch(x, y_train, batches.reshape(num_batches, per_batch)))
    if epoch_features is not None:
      valid = epoch_features.valid() or valid
    valid_acc = float(np.mean(predict(valid[0]) == valid[1]))
    history.append({"epoch": epoch, "train_loss": loss, "valid_accuracy": valid_acc,
                    "learning_rate": float(schedule(epoch * num_batches - 1))})
    if valid_acc >= best[0]:  # ties: the later epoch, as audax's save_best_checkpoint
      best = (valid_acc, epoch, [v.numpy() for v in layer.weights],
              epoch_features.state() if epoch_features is not None else None)
    if verbose and (epoch % 10 == 0 or epoch == settings.epochs):
      log(f"epoch {epoch}/{settings.epochs}: train loss {loss:.4f}, valid accuracy "
          f"{valid_acc:.4f} (best {best[0]:.4f} at epoch {best[1]})")
  layer.set_weights(best[2])
  if epoch_features is not None:
    test = epoch_features.test(best[3]) or test
  predictions = predict(test[0])
  return {"best_epoch": best[1], "valid_accuracy": best[0],
          "test_accuracy": float(np.mean(predictions == test[1])),
          "test_predictions": predictions, "test_labels": test[1], "history": history}
