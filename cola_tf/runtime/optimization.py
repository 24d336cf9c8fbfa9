"""AdamW with linear warmup + cosine decay, built by Model Garden's optimizer factory."""
import gin
from official.modeling.optimization import optimizer_factory
from official.modeling.optimization.configs import optimization_config

from cola_tf import logs

# Variable-name patterns of norm parameters, biases and layer scales: the usual set spared
# weight decay. audax's optax.adamw decays every parameter (the recipe: none spared).
NORMS_AND_BIASES = ("bias", "norm", "_bn", "bn/", "gamma", "beta", "layer_scale")


@gin.configurable(denylist=["total_steps", "steps_per_epoch", "global_batch_size"])
def build_adamw(total_steps, steps_per_epoch, learning_rate=1e-3, reference_batch_size=None,
                global_batch_size=None, warmup_epochs=None, warmup_steps=None,
                weight_decay=0.0, end_learning_rate_fraction=0.0, gradient_clip_norm=0.0,
                beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                no_weight_decay=NORMS_AND_BIASES, batch_size_scaling=None):
  """Returns (optimizer, schedule).

  Peak LR = learning_rate * global_batch_size / reference_batch_size when that is set (the
  recipe's lr * batch / 256), else learning_rate. `batch_size_scaling` is its old name, still
  read (operative configs of earlier runs hold it) with a one-line note. Linear warmup from 0 over
  warmup_steps (or warmup_epochs * steps_per_epoch), then cosine decay reaching
  end_learning_rate_fraction * peak exactly at total_steps. Variables whose names match a
  pattern of `no_weight_decay` get no weight decay (`()`: every variable decays, as audax).
  """
  reference_batch_size = _renamed_reference_batch(reference_batch_size, batch_size_scaling)
  peak = float(learning_rate)
  if reference_batch_size:
    if not global_batch_size:
      raise ValueError("build_adamw: reference_batch_size needs global_batch_size")
    peak *= global_batch_size / float(reference_batch_size)
  warmup_steps = _warmup(total_steps, steps_per_epoch, warmup_epochs, warmup_steps)
  config = {
      "optimizer": {"type": "adamw", "adamw": {
          "weight_decay_rate": float(weight_decay),
          "exclude_from_weight_decay": list(no_weight_decay),
          "gradient_clip_norm": float(gradient_clip_norm), "beta_1": beta_1,
          "beta_2": beta_2, "epsilon": epsilon}},
      "learning_rate": {"type": "cosine", "cosine": {
          "initial_learning_rate": peak, "decay_steps": total_steps - warmup_steps,
          "alpha": float(end_learning_rate_fraction), "offset": warmup_steps}},
  }
  if warmup_steps > 0:
    config["warmup"] = {"type": "linear", "linear": {
        "warmup_steps": warmup_steps, "warmup_learning_rate": 0.0}}
  factory = optimizer_factory.OptimizerFactory(
      optimization_config.OptimizationConfig(config))
  schedule = factory.build_learning_rate()
  return factory.build_optimizer(schedule), schedule


def _warmup(total_steps, steps_per_epoch, warmup_epochs, warmup_steps):
  """Warmup steps from steps or epochs; a warmup as long as the run (a short smoke run of a
  config made for a longer one) becomes a tenth of the run, with a line saying so."""
  if total_steps < 1:
    raise ValueError(f"build_adamw: total_steps must be >= 1, got {total_steps}")
  if warmup_steps is None:
    warmup_steps = int(round((warmup_epochs or 0.0) * steps_per_epoch))
  if warmup_steps < 0:
    raise ValueError(f"build_adamw: warmup_steps must be >= 0, got {warmup_steps}")
  if warmup_steps >= total_steps:
    clamped = total_steps // 10
    logs.log(f"note: the warmup ({warmup_steps} steps) is not shorter than the run "
             f"({total_steps} steps): warming up over {clamped} steps, a tenth of the run")
    warmup_steps = clamped
  return warmup_steps


def _renamed_reference_batch(reference_batch_size, batch_size_scaling):
  if batch_size_scaling is None:
    return reference_batch_size
  if reference_batch_size not in (None, batch_size_scaling):
    raise ValueError(f"build_adamw: batch_size_scaling ({batch_size_scaling}) is the old name "
                     f"of reference_batch_size ({reference_batch_size}): bind only the latter")
  logs.log("note: build_adamw.batch_size_scaling is now build_adamw.reference_batch_size; "
           f"using {batch_size_scaling}")
  return batch_size_scaling
