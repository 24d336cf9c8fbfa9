r"""Runs audax's own code (a scratch environment, see docs/audax_equivalence.md) and records
what it computes: a checkpoint in audax's format and the outputs of every stage, for the
equivalence tests (`tests/test_audax_equivalence.py`), which need no jax.

  AUDAX=/path/to/patched/audax
  PYTHONPATH=$AUDAX:$AUDAX/recipes/cola scratch/bin/python make_fixtures.py --out tests/fixtures/audax
  ... make_fixtures.py --sizes full --out /tmp/audax_full   # published sizes, not kept

Per model (ConvNeXt, EfficientNet; the CI sizes are small, `--sizes full` the published ones)
it writes `recipe.json` (`recipe_values`: audax's configs and code defaults) and
`MODEL/checkpoint_0` (audax's `create_train_state` + flax's `save_checkpoint`:
the msgpack file audax's training writes) and `MODEL/outputs.npz`:
* frontend: waveform pairs (regenerated from `input_seed`, see `inputs.py`), each crop
  L2-normalised as audax's tf.data parser does, through audax's jax spectrogram + mel + log;
* encoder features, head embeddings, similarity logits and loss, in inference mode and in
  training mode (BatchNorm on batch statistics, the moved statistics returned);
* the bfloat16 forward (`dtype=bfloat16`, audax's `half_precision` on TPU) of the same
  parameters (ConvNeXt's layer scales at 0.5) on the same log-mel;
* `steps`: audax's `train_step` (pmapped on one device, as its training runs it) for 10
  steps on log-mel batches regenerated from `step_seed`, at the recipe's optax AdamW and
  'warmupcosine' schedule: loss per step, gradients of step 1, parameters and BatchNorm
  statistics after step 2 (the first at a nonzero rate: both warmups start at 0) and 10.
Our code never runs here and audax's code never enters the repository: only these numbers.
"""
import argparse
import functools
import importlib.util
import inspect
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inputs  # noqa: E402  (the fixtures' inputs, shared with the tests: numpy only)

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from flax.training import checkpoints  # noqa: E402

from audax.models import convnext  # noqa: E402
from audax.models import efficientnet  # noqa: E402
from audax.models.utils import SimilarityMeasure  # noqa: E402
from audax.training_utils import train_contrastive  # noqa: E402
from audax.training_utils import training_utilities  # noqa: E402
from audax.training_utils.misc import TrainingMode  # noqa: E402
from contrastive_model import COLA  # noqa: E402  (recipes/cola)

flax.config.update("flax_use_orbax_checkpointing", False)  # audax's msgpack format

# name -> (encoder class with its size, log-mel standardisation, base LR, weight decay); the
# recipe's per-256 rates (the fixtures' batches are small), audax's convnext/efficientnet.
SIZES = {
    "small": {
        "convnext": functools.partial(convnext.ConvNeXt, **inputs.SMALL_CONVNEXT),
        "efficientnet": functools.partial(efficientnet._efficientnet, "efficientnet_small",
                                          *inputs.SMALL_EFFICIENTNET, 0.2),
    },
    "full": {
        "convnext": functools.partial(convnext.ConvNeXt, depths=(3, 3, 9, 3),
                                      dims=(96, 192, 384, 768)),
        "efficientnet": efficientnet.efficientnet_b0,
    },
}


def audax_log_mel(waveforms, normalize):
  """audax's data path for crops: tf.math.l2_normalize(eps 1e-9) in its parser, then its
  jax features (`get_feature_functions`, `apply_audio_transforms`)."""
  x = waveforms / np.sqrt(np.maximum((waveforms.astype(np.float64) ** 2).sum(-1, keepdims=True),
                                     1e-9)).astype(np.float32)
  config = ml_collections.ConfigDict({
      "data": {"jax_transforms": True},
      "audio_config": {"features": "log_mel", "n_fft": 1024, "hop_len": 160, "win_len": 400,
                       "n_mels": 64, "sample_rate": 16000, "fmin": 60, "fmax": 7800}})
  tfs = training_utilities.get_feature_functions(config)
  out = training_utilities.apply_audio_transforms(jnp.asarray(x, jnp.float32), tfs,
                                                  normalize=normalize)
  return np.asarray(out)


def make_model(encoder_cls, dtype=jnp.float32, embedding_dim=inputs.EMBEDDING_DIM):
  return COLA(model_cls=functools.partial(encoder_cls, drop_path_rate=0.0)
              if getattr(encoder_cls, "func", None) is convnext.ConvNeXt else
              functools.partial(encoder_cls, drop_path_prob=0.0),
              similarity_measure=SimilarityMeasure.BILINEAR,
              embedding_dim=embedding_dim, dtype=dtype)


def train_config(name):
  lr, wd = inputs.RATES[name]
  return ml_collections.ConfigDict({
      "half_precision": False, "input_shape": (100, 64, 1), "num_epochs": inputs.EPOCHS,
      "opt": {"optimizer": "Adamw", "learning_rate": lr, "weight_decay": wd,
              "schedule": "warmupcosine", "warmup_epochs": inputs.WARMUP_EPOCHS}})


def forward(model, variables, log_mel, train):
  """(features, embeddings, logits, new batch_stats) of audax's COLA, stage by stage."""
  # audax's COLA is compact: capture its intermediates instead of re-wiring it.
  logits, state = model.apply(variables, log_mel, train=train, mutable=["batch_stats",
                                                                         "intermediates"],
                              capture_intermediates=True)
  inter = state["intermediates"]
  features = inter["encoder"]["__call__"][0]
  embedding = inter["bilinear_layernorm"]["__call__"][0]
  return (np.asarray(features, np.float32), np.asarray(jnp.tanh(embedding), np.float32),
          np.asarray(logits, np.float32), state.get("batch_stats", {}))


def _layer_scales_set(params):
  """ConvNeXt's layer scales at inputs.BFLOAT16_LAYER_SCALE: at their 1e-6 init each block
  adds ~nothing to its bf16 input, so the blocks' precision would not show."""
  return jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.full_like(v, inputs.BFLOAT16_LAYER_SCALE)
      if getattr(path[-1], "key", None) == "gamma" else v, params)


def loss_of(logits):
  labels = jax.nn.one_hot(jnp.arange(logits.shape[0]), logits.shape[0])
  return float(training_utilities.cross_entropy_loss(jnp.asarray(logits), labels))


def flat(tree, prefix):
  return {f"{prefix}/{'/'.join(k)}": np.asarray(v, np.float32)
          for k, v in flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


def run_steps(state, model_name, lr_fn):
  """audax's train_step, pmapped on one device, on the regenerated batches."""
  p_step = jax.pmap(functools.partial(train_contrastive.train_step, learning_rate_fn=lr_fn,
                                      cost_func=training_utilities.cross_entropy_loss,
                                      mode=TrainingMode.COLA), axis_name="batch")
  state = flax.jax_utils.replicate(state)
  out = {}
  grad_fn = jax.grad(lambda params, batch: _loss(state, params, batch))
  for step in range(inputs.STEPS):
    anchors, positives = inputs.step_batch(step)
    batch = {"anchor": anchors[None, ..., None], "positive": positives[None, ..., None],
             "label": np.zeros((1, 1), np.int32)}
    if step == 0:
      single = jax.tree_util.tree_map(lambda x: x[0], state)
      out.update(flat(grad_fn(single.params, batch), "grads_1"))
    state, metrics = p_step(state, batch)
    out.setdefault("loss_per_step", []).append(float(metrics["loss"][0]))
    out.setdefault("lr_per_step", []).append(float(metrics["learning_rate"][0]))
    if step + 1 in inputs.RECORDED_STEPS:
      single = jax.tree_util.tree_map(lambda x: x[0], state)
      out.update(flat(single.params, f"params_{step + 1}"))
      out.update(flat(single.batch_stats, f"batch_stats_{step + 1}"))
  out["loss_per_step"] = np.asarray(out["loss_per_step"])
  out["lr_per_step"] = np.asarray(out["lr_per_step"])
  return out


def _loss(state, params, batch):
  x = jnp.concatenate([batch["anchor"][0], batch["positive"][0]])
  logits, _ = state.apply_fn({"params": params, "batch_stats": jax.tree_util.tree_map(
      lambda v: v[0], state.batch_stats)}, x, mutable=["batch_stats"])
  labels = jax.nn.one_hot(jnp.arange(logits.shape[0]), logits.shape[0])
  return training_utilities.cross_entropy_loss(logits, labels)


def make(name, encoder_cls, out_dir, with_steps, embedding_dim):
  model = make_model(encoder_cls, embedding_dim=embedding_dim)
  config = train_config(name)
  lr_fn = training_utilities.create_learning_rate_fn(config, config.opt.learning_rate,
                                                     inputs.STEPS_PER_EPOCH)
  state = training_utilities.create_train_state(jax.random.PRNGKey(inputs.INIT_SEED), config,
                                                model, lr_fn)
  folder = os.path.join(out_dir, name)
  os.makedirs(folder, exist_ok=True)
  checkpoints.save_checkpoint(folder, state, 0, overwrite=True)
  waveforms = inputs.waveform_pairs()
  log_mel = audax_log_mel(waveforms, normalize=inputs.STANDARDISED[name])
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  out = {"waveforms_sha": np.frombuffer(inputs.digest(waveforms), np.uint8),
         "log_mel": log_mel[..., 0]}
  for mode, train in (("inference", False), ("training", True)):
    features, embeddings, logits, stats = forward(model, variables, log_mel, train)
    out.update({f"{mode}/features": features, f"{mode}/embeddings": embeddings,
                f"{mode}/logits": logits, f"{mode}/loss": np.float32(loss_of(logits))})
    if train and stats:
      out.update(flat(stats, "training/batch_stats"))
  bf16 = make_model(encoder_cls, jnp.bfloat16, embedding_dim)
  features, _, logits, _ = forward(bf16, {**variables, "params": _layer_scales_set(
      state.params)}, log_mel.astype(jnp.bfloat16), False)
  out.update({"bfloat16/features": features, "bfloat16/logits": logits})
  if with_steps:
    out.update(run_steps(state, name, lr_fn))
  np.savez_compressed(os.path.join(folder, "outputs.npz"), **out)
  print(f"{name}: {folder}/checkpoint_0 and outputs.npz ({len(out)} arrays)")


SSL_CONFIGS = ("efficientnetb0", "convnext_tiny", "convnext_large")
PROBE_CONFIGS = ("efficientnetb0_speechcommands_ft", "convnext_tiny_sc_ft", "convnext_large_sc_ft")


def _config(root, relative):
  spec = importlib.util.spec_from_file_location(os.path.basename(relative),
                                                os.path.join(root, relative))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config().to_dict()


def _source_value(root, relative, pattern):
  with open(os.path.join(root, relative)) as f:
    return json.loads(re.search(pattern, f.read()).group(1))


def recipe_values(root):
  """audax's recipe as its files and code state it, read from them (not typed here): the SSL
  and probe configs, and the code defaults and constants the recipe relies on. The recipe
  table's test (tests/test_recipe_table.py) compares our gin files with these."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  adamw = inspect.signature(optax.adamw).parameters
  code = {
      "optax_adamw": {k: adamw[k].default for k in ("b1", "b2", "eps", "mask")},
      "convnext_ls_init_value": convnext.ConvNeXt.ls_init_value,
      "convnext_global_pool": convnext.ConvNeXt.global_pool,
      "convnext_drop_path_rate": {n: getattr(convnext, n).keywords.get("drop_path_rate", 0.0)
                                  for n in ("convnext_tiny", "convnext_large")},
      "efficientnet_drop_path_prob": efficientnet.EfficientNet.drop_path_prob,
      "efficientnet_global_pool": efficientnet.EfficientNet.global_pool,
      "flax_layer_norm_epsilon": nn.LayerNorm.epsilon,
      "bilinear_init_stddev": inspect.signature(nn.initializers.normal).parameters[
          "stddev"].default,
      # (data_v2/dataset.py imports TensorFlow and tensorflow-io: read, not imported)
      "positive_noise": _source_value(root, "audax/training_utils/data_v2/dataset.py",
                                      r"noise=([0-9e.-]+),"),
      "reference_batch_size": _source_value(root, "recipes/cola/train_contrastive.py",
                                            r"config\.batch_size / (\d+)\."),
      "l2_epsilon": _source_value(root, "audax/training_utils/data_v2/dataset.py",
                                  r"l2_normalize\(waveform_a, epsilon=([0-9e.-]+)\)"),
      "log_floor": _source_value(root, "audax/training_utils/training_utilities.py",
                                 r"jnp\.clip\(output, (?:a_)?min=([0-9e.-]+)"),
      "seed": _source_value(root, "recipes/cola/main.py",
                            r"DEFINE_integer\(\"seed\", (\d+)"),
      "schedules_with_a_branch": re.findall(
          r'config\.opt\.schedule == "(\w+)"',
          open(os.path.join(root, "audax/training_utils/training_utilities.py")).read()),
  }
  return {"code": code,
          "ssl": {n: _config(root, f"recipes/cola/configs/ssl/{n}.py") for n in SSL_CONFIGS},
          "probe": {n: _config(root, "recipes/cola/configs/supervised/speechcommandsv2/"
                                     f"{n}.py") for n in PROBE_CONFIGS}}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True)
  p.add_argument("--sizes", choices=sorted(SIZES), default="small")
  p.add_argument("--models", default="convnext,efficientnet")
  p.add_argument("--recipe_only", action="store_true", help="write only OUT/recipe.json")
  a = p.parse_args()
  root = os.path.dirname(os.path.dirname(os.path.abspath(convnext.__file__)))
  with open(os.path.join(a.out, "recipe.json"), "w") as f:
    json.dump(recipe_values(os.path.dirname(root)), f, indent=1, sort_keys=True)
  if a.recipe_only:
    return
  for name in a.models.split(","):
    small = a.sizes == "small"
    make(name, SIZES[a.sizes][name], a.out, with_steps=small,
         embedding_dim=inputs.EMBEDDING_DIM if small else 512)


if __name__ == "__main__":
  main()
