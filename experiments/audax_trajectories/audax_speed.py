r"""audax's side of the step-speed comparison (scratch environment with audax's code): its
jitted COLA `train_step` (pmapped on one device, as its training runs it) on one fixed batch
of random log-mel pairs, for ConvNeXt-atto / ConvNeXt-T / EfficientNet-B0 at the published
heads (512-d, bilinear).

  PYTHONPATH=$AUDAX:$AUDAX/recipes/cola scratch/bin/python audax_speed.py --encoder convnext_tiny \
      [--batch 32] [--dtype float32|bfloat16] [--steps 3] [--repeats 3]

Prints one JSON line: pairs/s (median of --repeats timed loops of --steps steps after a
compiling warm-up), the compile time, and the device. `speed.py` (ours) runs this beside
cola_tf.benchmarks.train_step and prints the ratio.
"""
import argparse
import functools
import json
import statistics
import time

import numpy as np

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

from audax.models import convnext  # noqa: E402
from audax.models import efficientnet  # noqa: E402
from audax.models.utils import SimilarityMeasure  # noqa: E402
from audax.training_utils import train_contrastive  # noqa: E402
from audax.training_utils import training_utilities  # noqa: E402
from audax.training_utils.misc import TrainingMode  # noqa: E402
from contrastive_model import COLA  # noqa: E402  (recipes/cola)

ENCODERS = {  # our encoder name -> audax's class at that size (drop path as its recipes)
    "convnext_atto": functools.partial(convnext.ConvNeXt, depths=(2, 2, 6, 2),
                                       dims=(40, 80, 160, 320), drop_path_rate=0.0),
    "convnext_tiny": functools.partial(convnext.convnext_tiny, drop_path_rate=0.0),
    "efficientnet_b0": efficientnet.efficientnet_b0,
}


def run(encoder, batch, dtype, steps, repeats, frames=100):
  model = COLA(model_cls=ENCODERS[encoder], similarity_measure=SimilarityMeasure.BILINEAR,
               embedding_dim=512, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  config = ml_collections.ConfigDict({
      "half_precision": dtype == "bfloat16", "input_shape": (frames, 64, 1), "num_epochs": 10,
      "opt": {"optimizer": "Adamw", "learning_rate": 1e-4, "weight_decay": 1e-4,
              "schedule": "warmupcosine", "warmup_epochs": 1}})
  lr_fn = training_utilities.create_learning_rate_fn(config, 1e-4, 100)
  state = flax.jax_utils.replicate(
      training_utilities.create_train_state(jax.random.PRNGKey(0), config, model, lr_fn))
  p_step = jax.pmap(functools.partial(train_contrastive.train_step, learning_rate_fn=lr_fn,
                                      cost_func=training_utilities.cross_entropy_loss,
                                      mode=TrainingMode.COLA), axis_name="batch")
  rng = np.random.default_rng(0)
  data = {k: rng.standard_normal((1, batch, frames, 64, 1)).astype(np.float32)
          for k in ("anchor", "positive")}
  data["label"] = np.zeros((1, 1), np.int32)
  started = time.perf_counter()
  state, metrics = p_step(state, data)
  jax.block_until_ready(metrics["loss"])
  compile_s = time.perf_counter() - started
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(steps):
      state, metrics = p_step(state, data)
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - started)
  return {"side": "audax", "encoder": encoder, "batch": batch, "dtype": dtype,
          "pairs_per_s": batch * steps / statistics.median(times),
          "compile_and_first_step_s": compile_s, "device": str(jax.devices()[0]),
          "jax": jax.__version__}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--encoder", choices=sorted(ENCODERS), required=True)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args()
  print(json.dumps(run(a.encoder, a.batch, a.dtype, a.steps, a.repeats)), flush=True)


if __name__ == "__main__":
  main()
