"""AdamW with linear warmup + cosine decay: Model Garden's AdamWeightDecay and schedules."""
import gin
import tensorflow as tf
from official.modeling.optimization import legacy_adamw
from official.modeling.optimization import lr_schedule

from cola_tf import logs

# Variable-name patterns of norm parameters, biases and layer scales: the usual set spared
# weight decay. audax's optax.adamw decays every parameter (the recipe: none spared).
NORMS_AND_BIASES = ("bias", "norm", "_bn", "bn/", "gamma", "beta", "layer_scale")
EPSILON_PLACEMENTS = ("optax", "keras")


class AdamW(legacy_adamw.AdamWeightDecay):
  """Model Garden's AdamWeightDecay (decoupled decay lr * wd * w; Keras' fused Adam update),
  with the epsilon where `epsilon_placement` puts it:
  * 'optax' (audax's optax.adamw, the recipe): m_hat / (sqrt(v_hat) + eps);
  * 'keras' (Keras' and Model Garden's Adam): the bias correction folded into the rate,
    m_hat / (sqrt(v_hat) + eps / sqrt(1 - beta_2^t)): an effective epsilon up to 30x larger
    in the first steps, so weights with tiny gradients (ConvNeXt's, behind its 1e-6 layer
    scales) move far less than optax moves them.
  The fused kernel adds its epsilon to sqrt(v): passing eps * sqrt(1 - beta_2^t) gives optax's
  update exactly (m_hat / (sqrt(v_hat) + eps) = sqrt(1 - beta_2^t) / (1 - beta_1^t) * m /
  (sqrt(v) + eps sqrt(1 - beta_2^t)))."""

  def __init__(self, *args, epsilon_placement="optax", **kwargs):
    super().__init__(*args, **kwargs)
    if epsilon_placement not in EPSILON_PLACEMENTS:
      raise ValueError(f"build_adamw.epsilon_placement must be one of {EPSILON_PLACEMENTS}, "
                       f"got {epsilon_placement!r}")
    self.epsilon_placement = epsilon_placement

  def _prepare_local(self, var_device, var_dtype, apply_state):
    super()._prepare_local(var_device, var_dtype, apply_state)
    if self.epsilon_placement == "optax":
      coefficients = apply_state[(var_device, var_dtype)]
      coefficients["epsilon"] = coefficients["epsilon"] * tf.sqrt(
          1.0 - coefficients["beta_2_power"])

  def get_config(self):
    return {**super().get_config(), "epsilon_placement": self.epsilon_placement}


@gin.configurable(denylist=["total_steps", "steps_per_epoch", "global_batch_size"])
def build_adamw(total_steps, steps_per_epoch, learning_rate=1e-3, reference_batch_size=None,
                global_batch_size=None, warmup_epochs=None, warmup_steps=None,
                weight_decay=0.0, end_learning_rate_fraction=0.0, gradient_clip_norm=0.0,
                beta_1=0.9, beta_2=0.999, epsilon=1e-8, epsilon_placement="optax",
                no_weight_decay=NORMS_AND_BIASES, batch_size_scaling=None):
  """Returns (optimizer, schedule).

  Peak LR = learning_rate * global_batch_size / reference_batch_size when that is set (the
  recipe's lr * batch / 256), else learning_rate. `batch_size_scaling` is its old name, still
  read (operative configs of earlier runs hold it) with a one-line note. Linear warmup from 0 over
  warmup_steps (or warmup_epochs * steps_per_epoch), then cosine decay reaching
  end_learning_rate_fraction * peak exactly at total_steps. Variables whose names match a
  pattern of `no_weight_decay` get no weight decay (`()`: every variable decays, as audax).
  `epsilon_placement`: 'optax' (the recipe) or 'keras' (see `AdamW`).
  """
  reference_batch_size = _renamed_reference_batch(reference_batch_size, batch_size_scaling)
  peak = float(learning_rate)
  if reference_batch_size:
    if not global_batch_size:
      raise ValueError("build_adamw: reference_batch_size needs global_batch_size")
    peak *= global_batch_size / float(reference_batch_size)
  warmup_steps = _warmup(total_steps, steps_per_epoch, warmup_epochs, warmup_steps)
  schedule = lr_schedule.CosineDecayWithOffset(
      initial_learning_rate=peak, decay_steps=total_steps - warmup_steps,
      alpha=float(end_learning_rate_fraction), offset=warmup_steps)
  if warmup_steps > 0:
    schedule = lr_schedule.LinearWarmup(schedule, warmup_steps, warmup_learning_rate=0.0)
  optimizer = AdamW(learning_rate=schedule, weight_decay_rate=float(weight_decay),
                    exclude_from_weight_decay=list(no_weight_decay),
                    gradient_clip_norm=float(gradient_clip_norm), beta_1=beta_1,
                    beta_2=beta_2, epsilon=epsilon, epsilon_placement=epsilon_placement)
  return optimizer, schedule


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
