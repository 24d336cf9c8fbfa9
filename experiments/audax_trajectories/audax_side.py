r"""audax's side of the side-by-side training run (scratch environment with audax's code, see
docs/audax_trajectories.md): audax's own `create_train_state` and jitted `train_step`
(pmapped on one device, as its training runs it) on the batches our pipeline recorded
(`record_batches.py`: log-mel pairs with their SpecAugment masks and noise), at the settings
recorded beside them (settings.json: encoder size, peak rate, weight decay, warmup, schedule).

  AUDAX=/path/to/patched/audax
  PYTHONPATH=$AUDAX:$AUDAX/recipes/cola scratch/bin/python audax_side.py --run RUN [--steps N]

Writes RUN/audax/checkpoint_0 (the initial state, which `ours_side.py` imports: both start
from the same parameters), RUN/audax/trajectory.csv (per step: loss, contrastive accuracy
of the step's logits, learning rate, parameter norms after the step, seconds) and
RUN/audax/checkpoint_<N> after the last step (probed through the importer). Our code never
runs here and audax's code never enters the repository.
"""
import argparse
import functools
import os
import sys
import time

import numpy as np

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from flax.training import checkpoints  # noqa: E402

from audax.models import convnext  # noqa: E402
from audax.models.utils import SimilarityMeasure  # noqa: E402
from audax.training_utils import train_contrastive  # noqa: E402
from audax.training_utils import training_utilities  # noqa: E402
from audax.training_utils.misc import TrainingMode  # noqa: E402
from contrastive_model import COLA  # noqa: E402  (recipes/cola)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trajectory  # noqa: E402  (the shared CSV columns and batch files: numpy only)

flax.config.update("flax_use_orbax_checkpointing", False)  # audax's msgpack format


def build_state(settings):
  """(model, state, learning-rate fn): audax's COLA over its ConvNeXt at the recorded size."""
  model = COLA(model_cls=functools.partial(convnext.ConvNeXt, depths=tuple(settings["depths"]),
                                           dims=tuple(settings["dims"]), drop_path_rate=0.0),
               similarity_measure=SimilarityMeasure.BILINEAR,
               embedding_dim=settings["embedding_dim"], dtype=jnp.float32)
  config = ml_collections.ConfigDict({
      "half_precision": False, "input_shape": (settings["frames"], settings["mels"], 1),
      "num_epochs": settings["epochs"],
      "opt": {"optimizer": "Adamw", "learning_rate": settings["peak_learning_rate"],
              "weight_decay": settings["weight_decay"], "schedule": "warmupcosine",
              "warmup_epochs": settings["warmup_epochs"]}})
  lr_fn = training_utilities.create_learning_rate_fn(config, config.opt.learning_rate,
                                                     settings["steps_per_epoch"])
  state = training_utilities.create_train_state(jax.random.PRNGKey(settings["init_seed"]),
                                                config, model, lr_fn)
  return model, state, lr_fn


def _norms(params):
  """{column: L2 norm} of all parameters, the encoder's and the head's, summed in float64 on
  the host (as ours_side.py sums): a float32 sum over millions of squares is off by ~1e-7."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(jax.device_get(params)))
  sums = {"encoder_norm": 0.0, "head_norm": 0.0}
  for key, value in flat.items():
    sums["encoder_norm" if key[0] == "encoder" else "head_norm"] += float(
        np.sum(np.square(np.asarray(value, np.float64))))
  return {"param_norm": float(np.sqrt(sum(sums.values()))),
          **{k: float(np.sqrt(s)) for k, s in sums.items()}}


def run(run_dir, steps):
  settings = trajectory.read_settings(run_dir)
  batches = trajectory.Batches(run_dir)
  steps = min(steps or len(batches), len(batches))
  out = os.path.join(run_dir, "audax")
  os.makedirs(out, exist_ok=True)
  model, state, lr_fn = build_state(settings)
  checkpoints.save_checkpoint(out, state, 0, overwrite=True)
  p_step = jax.pmap(functools.partial(train_contrastive.train_step, learning_rate_fn=lr_fn,
                                      cost_func=training_utilities.cross_entropy_loss,
                                      mode=TrainingMode.COLA), axis_name="batch")

  @jax.jit
  def accuracy(params, batch_stats, x):
    # The logits the step saw (no BatchNorm in ConvNeXt, no dropout: the same forward).
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True)
    return jnp.mean(jnp.argmax(logits, -1) == jnp.arange(logits.shape[0]))

  replicated = flax.jax_utils.replicate(state)
  rows, started = [], time.time()
  for step in range(steps):
    anchors, positives = batches[step]
    batch = {"anchor": anchors[None, ..., None], "positive": positives[None, ..., None],
             "label": np.zeros((1, 1), np.int32)}
    single = jax.tree_util.tree_map(lambda v: v[0], replicated)
    step_accuracy = accuracy(single.params, single.batch_stats,
                             np.concatenate([anchors, positives])[..., None])
    replicated, metrics = p_step(replicated, batch)
    after = _norms(jax.tree_util.tree_map(lambda v: v[0], replicated.params))
    trajectory.record_step(out, rows, {
        "step": step + 1, "loss": float(metrics["loss"][0]),
        "contrastive_accuracy": float(step_accuracy),
        "learning_rate": float(metrics["learning_rate"][0]), **after}, "audax", steps, started)
  checkpoints.save_checkpoint(out, flax.jax_utils.unreplicate(replicated), steps,
                              overwrite=True, keep=2)
  print(f"audax: {steps} steps in {time.time() - started:.0f} s -> {out}")


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--run", required=True, help="the folder record_batches.py wrote")
  p.add_argument("--steps", type=int, default=None, help="default: every recorded batch")
  a = p.parse_args()
  run(a.run, a.steps)


if __name__ == "__main__":
  main()
