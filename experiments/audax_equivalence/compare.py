r"""Our code against the numbers audax's code recorded (`make_fixtures.py`): the importer, the
frontend, the encoder, head, similarity and loss in both modes, the bfloat16 forward, and 10
training steps (gradients, AdamW, BatchNorm statistics), stage by stage.

  python experiments/audax_equivalence/compare.py [--fixtures tests/fixtures/audax] [--models ...]

Prints one line per stage: the largest |ours - audax| relative to audax's largest |value| of
that stage (parameters: per group, relative to the group's largest |change| from the
initial values, so the optimizer's work is what is compared, over the elements whose
gradients are above float32 rounding; the fraction left out is printed). The tests
(tests/test_audax_equivalence.py) call the same functions and bound the same numbers.
"""
import argparse
import collections
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import inputs  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures", "audax")
# Each fixture model: its recipe config and the bindings that make our encoder its size.
# Drop path off: audax's random masks cannot be replayed (its ConvNeXt never applies one).
CONFIGS = {
    "convnext": ("convnext_tiny", [
        f"build_encoder.depths = {inputs.SMALL_CONVNEXT['depths']}",
        f"build_encoder.dims = {inputs.SMALL_CONVNEXT['dims']}"]),
    "efficientnet": ("efficientnet_b0", [
        f"build_encoder.width_depth = {inputs.SMALL_EFFICIENTNET}"]),
}
FULL_CONFIGS = {"convnext": ("convnext_tiny", []), "efficientnet": ("efficientnet_b0", [])}
COMMON = ["build_encoder.drop_path_rate = 0.0"]
GRADIENT_AGREEMENT, VARIABLE_GRADIENT_AGREEMENT = 0.1, 1e-3  # see _above_rounding


def relative(ours, theirs):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  if ours.shape != theirs.shape:
    raise ValueError(f"shapes differ: ours {ours.shape}, audax {theirs.shape}")
  return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))


def load(name, fixtures=FIXTURES, gin_params=(), sizes="small"):
  """(our ColaModel with audax's initial parameters, its frontend, audax's outputs);
  sizes 'full': make_fixtures.py --sizes full's checkpoints (the published sizes)."""
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf.export import frozen_encoder  # pylint: disable=import-outside-toplevel
  from cola_tf.export import from_audax  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  config, params = (CONFIGS if sizes == "small" else FULL_CONFIGS)[name]
  gin.clear_config()
  configuration.parse_gin([config], params + COMMON + list(gin_params))
  state, _ = from_audax.read_checkpoint(os.path.join(fixtures, name))
  frontend, model, _ = frozen_encoder.configured_model(
      embedding_dim=state["params"]["embedding_fc"]["kernel"].shape[1])
  from_audax.load_into(model, state)
  return model, frontend, dict(np.load(os.path.join(fixtures, name, "outputs.npz")))


def forward_differences(model, frontend, audax):
  """{stage: relative difference} for the frontend and both modes' forward passes."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cola_tf import model as model_lib  # pylint: disable=import-outside-toplevel
  waveforms = inputs.waveform_pairs()
  if inputs.digest(waveforms) != audax["waveforms_sha"].tobytes():
    raise ValueError("the regenerated waveforms differ from audax's: numpy's generator moved")
  out = {"frontend": relative(frontend(tf.constant(waveforms)), audax["log_mel"])}
  log_mel = tf.constant(audax["log_mel"])  # the encoder's input: audax's own log-mel
  for mode in ("inference", "training"):
    train = mode == "training"
    if train:
      before = [v.numpy() for v in model.encoder.non_trainable_variables]
    features = model.encoder(log_mel, training=train)
    embeddings = model.embed(log_mel, training=train) if not train else tf.math.tanh(
        model.layer_norm(model.projection(features)))
    logits = model.logits(embeddings[:inputs.PAIRS], embeddings[inputs.PAIRS:])
    loss = tf.reduce_mean(model_lib.contrastive_loss(logits))
    out.update({f"{mode}/features": relative(features, audax[f"{mode}/features"]),
                f"{mode}/embeddings": relative(embeddings, audax[f"{mode}/embeddings"]),
                f"{mode}/logits": relative(logits, audax[f"{mode}/logits"]),
                f"{mode}/loss": relative(loss, audax[f"{mode}/loss"])})
    if train and before:
      out["training/batch_statistics"] = _statistics_difference(model, audax, "training/batch_stats")
      for v, value in zip(model.encoder.non_trainable_variables, before):
        v.assign(value)
  return out


def bfloat16_difference(model, audax):
  """Our encoder under the config's mixed_bfloat16 policy (the same weights) against audax's
  bfloat16 forward: the relative difference of the features."""
  import gin  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  tf_keras.mixed_precision.set_global_policy(gin.query_parameter("train.precision"))
  try:
    encoder = encoders.build_encoder(input_shape=(100, 64))
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
  encoder.set_weights(model.encoder.get_weights())
  for layer in encoder.layers:  # as make_fixtures sets audax's
    if layer.name.endswith("_layer_scale"):
      layer.gamma.assign(tf.fill(layer.gamma.shape, inputs.BFLOAT16_LAYER_SCALE))
  ours = tf.cast(encoder(tf.constant(audax["log_mel"]), training=False), tf.float32).numpy()
  return relative(ours, audax["bfloat16/features"])


def _statistics_difference(model, audax, prefix):
  """Relative difference of the BatchNorm moving means and of the variances (each kind
  relative to its largest |value|: a mean of ~1e-9 is float noise in both)."""
  from cola_tf.export import from_audax  # pylint: disable=import-outside-toplevel
  kinds = collections.defaultdict(lambda: ([], []))
  for weight, path, _ in from_audax.mapping(model):
    if path.startswith("stats:"):
      ours, theirs = kinds[path.rsplit("/", 1)[-1]]
      ours.append(weight.numpy().ravel())
      theirs.append(audax[f"{prefix}/{path[len('stats:'):]}"].ravel())
  return max(relative(np.concatenate(a), np.concatenate(b)) for a, b in kinds.values())


def step_differences(model, audax, name, dump=None):
  """Runs our ColaTrainer for 10 steps on the fixture's batches at the fixture's AdamW and
  schedule; {group: relative difference} of step-1 gradients, parameters after 1 and 10
  steps (relative to the group's change), and losses per step."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cola_tf.export import from_audax  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import optimization  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
  lr, wd = inputs.RATES[name]
  optimizer, schedule = optimization.build_adamw(
      inputs.STEPS_PER_EPOCH * inputs.EPOCHS, inputs.STEPS_PER_EPOCH, learning_rate=lr,
      reference_batch_size=None, warmup_epochs=inputs.WARMUP_EPOCHS, weight_decay=wd,
      no_weight_decay=())
  batches = [inputs.step_batch(s) for s in range(inputs.STEPS)]
  data = tf.data.Dataset.from_tensor_slices({"anchor": np.stack([b[0] for b in batches]),
                                             "positive": np.stack([b[1] for b in batches])})
  strategy = tf.distribute.get_strategy()
  trainer = trainer_lib.ColaTrainer(strategy, model, optimizer, data,
                                    global_batch_size=inputs.PAIRS)
  mapped = {id(w): (path, transform or (lambda x: x))
            for w, path, transform in from_audax.mapping(model)}
  paths = {key: path for key, (path, _) in mapped.items()}

  def theirs(prefix, key):  # audax's array in our layout
    return mapped[key][1](audax[f"{prefix}/{paths[key]}"])
  initial = {id(v): v.numpy() for v in model.trainable_variables}
  gradients = _gradients(model, batches[0])
  out = {}
  pairs = collections.defaultdict(list)
  for v, g in zip(model.trainable_variables, gradients):
    pairs[_group(paths[id(v)])].append((g.numpy(), theirs("grads_1", id(v))))
  for group, values in pairs.items():
    out[f"gradients step 1 / {group}"] = _grouped(values)
  kept = _above_rounding(pairs, model, paths)
  out["elements whose step-1 gradients are rounding (not compared)"] = 1.0 - float(
      np.mean(np.concatenate([k.ravel() for k in kept.values()])))
  losses = []
  if dump is not None:  # our numbers in audax's layout (run_against_ourselves)
    dump.update({f"grads_1/{paths[id(v)]}": mapped[id(v)][1](g.numpy())
                 for v, g in zip(model.trainable_variables, gradients)})
  for step in range(1, inputs.STEPS + 1):
    losses.append(float(trainer.train(tf.constant(1))["loss"]))
    if dump is not None and step in inputs.RECORDED_STEPS:
      dump.update({f"params_{step}/{paths[id(v)]}": mapped[id(v)][1](v.numpy())
                   for v in model.trainable_variables})
      dump.update({f"batch_stats_{step}/{p[len('stats:'):]}": w.numpy()
                   for w, p, _ in from_audax.mapping(model) if p.startswith("stats:")})
    if step not in inputs.RECORDED_STEPS:
      continue
    changes = collections.defaultdict(list)
    for v in model.trainable_variables:
      keep = kept[id(v)]
      changes[_group(paths[id(v)])].append(((v.numpy() - initial[id(v)])[keep],
                                            (theirs(f"params_{step}", id(v))
                                             - initial[id(v)])[keep]))
    for group, values in changes.items():
      out[f"parameter change after step {step} / {group}"] = _grouped(values)
    if any(p.startswith("stats:") for p in paths.values()):
      out[f"batch statistics after step {step}"] = _statistics_difference(
          model, audax, f"batch_stats_{step}")
  if dump is not None:
    dump["loss_per_step"] = np.asarray(losses)
  out["loss per step"] = relative(losses, audax["loss_per_step"])
  out["learning rate per step"] = relative([float(schedule(s)) for s in range(inputs.STEPS)],
                                           audax["lr_per_step"])
  return out


def _above_rounding(pairs, model, paths):
  """{variable: mask of elements whose step-1 gradients, ours and audax's, agree within
  GRADIENT_AGREEMENT of audax's, in variables whose whole gradients agree within
  VARIABLE_GRADIENT_AGREEMENT of audax's largest}. Elsewhere a gradient is float32 rounding (e.g. a BatchNorm
  bias whose shift the next BatchNorm removes): its sign is noise, and Adam, dividing by
  sqrt(v), turns it into a full step either way, so those elements are counted, not
  compared."""
  kept, index = {}, collections.defaultdict(int)
  for v in model.trainable_variables:
    group = _group(paths[id(v)])
    ours, theirs = pairs[group][index[group]]
    index[group] += 1
    if relative(ours, theirs) > VARIABLE_GRADIENT_AGREEMENT:  # the whole variable's is noise
      kept[id(v)] = np.zeros(theirs.shape, bool)
    else:
      kept[id(v)] = np.abs(ours - theirs) <= GRADIENT_AGREEMENT * np.abs(theirs)
  return kept


def _grouped(pairs):
  return relative(np.concatenate([a.ravel() for a, _ in pairs]),
                  np.concatenate([b.ravel() for _, b in pairs]))


def _gradients(model, batch):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cola_tf import model as model_lib  # pylint: disable=import-outside-toplevel
  # BatchNorm moves its statistics in this extra forward: restore them after.
  saved = [v.numpy() for v in model.non_trainable_variables]
  with tf.GradientTape() as tape:
    embeddings = model.embed(tf.concat(batch, axis=0), training=True)
    logits = model.logits(embeddings[:inputs.PAIRS], embeddings[inputs.PAIRS:])
    loss = tf.reduce_mean(model_lib.contrastive_loss(logits))
  gradients = tape.gradient(loss, model.trainable_variables)
  for v, value in zip(model.non_trainable_variables, saved):
    v.assign(value)
  return gradients


def _group(path):
  """A parameter group: the head's layers; the encoder's by kind (kernels, norms, scales)."""
  if not path.startswith("encoder/"):
    return path.split("/")[0]
  parts = path.split("/")
  if parts[-2].startswith(("LayerNorm", "BatchNorm")):
    return "encoder norms"
  leaf = parts[-1]
  return {"kernel": "encoder kernels", "bias": "encoder biases",
          "gamma": "encoder layer scales"}.get(leaf, "encoder " + leaf)


def _config_is_bfloat16():
  import gin  # pylint: disable=import-outside-toplevel
  return gin.query_parameter("train.precision") == "mixed_bfloat16"


def run_against_ourselves(name, fixtures, folder):
  """Writes `folder/name` in the fixtures' layout with our step numbers in place of audax's:
  `compare.py --fixtures folder --threads 1` then measures what float32 reordering alone
  (other thread counts, so other summation orders) does to the same comparison."""
  import shutil  # pylint: disable=import-outside-toplevel
  model, _, audax = load(name, fixtures)
  dump = {}
  step_differences(model, audax, name, dump)
  os.makedirs(os.path.join(folder, name), exist_ok=True)
  shutil.copy(os.path.join(fixtures, name, "checkpoint_0"), os.path.join(folder, name))
  np.savez(os.path.join(folder, name, "outputs.npz"), **{**audax, **dump})


def main():
  from cola_tf import logs  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--fixtures", default=FIXTURES)
  p.add_argument("--models", default="convnext,efficientnet")
  p.add_argument("--no_steps", action="store_true")
  p.add_argument("--sizes", choices=("small", "full"), default="small")
  p.add_argument("--gin_param", action="append", default=[],
                 help="e.g. \"build_adamw.epsilon_placement = 'keras'\": what a setting costs")
  p.add_argument("--threads", type=int, help="TensorFlow's intra- and inter-op threads")
  p.add_argument("--ours_to", help="write our step numbers in the fixtures' layout here "
                 "(see run_against_ourselves) instead of comparing")
  a = p.parse_args()
  if a.threads:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
  for name in a.models.split(","):
    if a.ours_to:
      run_against_ourselves(name, a.fixtures, a.ours_to)
      continue
    model, frontend, audax = load(name, a.fixtures, a.gin_param, a.sizes)
    for stage, value in forward_differences(model, frontend, audax).items():
      print(f"{name:13s} {stage:45s} {value:.2e}")
    if _config_is_bfloat16():
      print(f"{name:13s} {'bfloat16/features':45s} {bfloat16_difference(model, audax):.2e}")
    if not a.no_steps and "loss_per_step" in audax:
      for stage, value in step_differences(model, audax, name).items():
        print(f"{name:13s} {stage:45s} {value:.2e}")


if __name__ == "__main__":
  main()
