r"""Our side of the side-by-side training run: audax's initial parameters (its checkpoint_0,
through the importer) in our ColaModel, our ColaTrainer and AdamW at the config recorded in
settings.json, on the recorded batches, one step per call.

  python experiments/audax_trajectories/ours_side.py --run RUN [--threads N] [--name ours]

Writes RUN/<name>/trajectory.csv (the columns audax_side.py writes) and RUN/<name>/export
(the frozen encoder after the last step, for the probes). Run it twice at different thread
counts (--threads 1 --name ours_1thread): the two differ only by float32 summation order,
the yardstick for how far audax's trajectory may be from ours.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import trajectory  # noqa: E402


def build(run_dir, settings):
  """(frontend, model with audax's initial parameters, window samples, optimizer, schedule)."""
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf.export import frozen_encoder  # pylint: disable=import-outside-toplevel
  from cola_tf.export import from_audax  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import optimization  # pylint: disable=import-outside-toplevel
  gin.clear_config()
  configuration.parse_gin(settings["gin_files"], settings["gin_params"])
  state, _ = from_audax.read_checkpoint(os.path.join(run_dir, "audax", "checkpoint_0"))
  frontend, model, window = frozen_encoder.configured_model()
  from_audax.load_into(model, state)
  optimizer, schedule = optimization.build_adamw(
      settings["total_steps"], settings["steps_per_epoch"],
      global_batch_size=settings["global_batch_size"])
  return frontend, model, window, optimizer, schedule


def norms(model):
  """{column: L2 norm} of all trainable parameters, the encoder's and the head's."""
  sums = {"encoder_norm": 0.0, "head_norm": 0.0}
  encoder = {id(v) for v in model.encoder.trainable_variables}
  for v in model.trainable_variables:
    part = "encoder_norm" if id(v) in encoder else "head_norm"
    sums[part] += float(np.sum(np.square(v.numpy(), dtype=np.float64)))
  return {"param_norm": float(np.sqrt(sum(sums.values()))),
          **{k: float(np.sqrt(s)) for k, s in sums.items()}}


def run(run_dir, name, steps):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cola_tf.export import frozen_encoder  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import trainer as trainer_lib  # pylint: disable=import-outside-toplevel
  settings = trajectory.read_settings(run_dir)
  batches = trajectory.Batches(run_dir)
  steps = min(steps or len(batches), len(batches))
  frontend, model, window, optimizer, schedule = build(run_dir, settings)
  spec = tf.TensorSpec((settings["global_batch_size"], settings["frames"], settings["mels"]),
                       tf.float32)
  data = tf.data.Dataset.from_generator(
      lambda: ({"anchor": a, "positive": p} for a, p in (batches[s] for s in range(steps))),
      output_signature={"anchor": spec, "positive": spec})
  trainer = trainer_lib.ColaTrainer(tf.distribute.get_strategy(), model, optimizer, data,
                                    global_batch_size=settings["global_batch_size"])
  out = os.path.join(run_dir, name)
  os.makedirs(out, exist_ok=True)
  rows, started = [], time.time()
  for step in range(steps):
    metrics = trainer.train(tf.constant(1))
    trajectory.record_step(out, rows, {
        "step": step + 1, "loss": float(metrics["loss"]),
        "contrastive_accuracy": float(metrics["contrastive_accuracy"]),
        "learning_rate": float(schedule(step)), **norms(model)}, name, steps, started)
  frozen_encoder.save(frozen_encoder.FrozenEncoder(frontend, model.encoder, window),
                      os.path.join(out, "export"), {"training_step": steps})
  print(f"{name}: {steps} steps in {time.time() - started:.0f} s -> {out}")


def main():
  from cola_tf import logs  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--run", required=True)
  p.add_argument("--name", default="ours", help="the output folder inside --run")
  p.add_argument("--steps", type=int, default=None, help="default: every recorded batch")
  p.add_argument("--threads", type=int, help="TensorFlow's intra- and inter-op threads")
  a = p.parse_args()
  if a.threads:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
  if not os.path.isfile(os.path.join(a.run, trajectory.SETTINGS)):
    raise SystemExit(f"[ours_side] {a.run}: no {trajectory.SETTINGS} (run record_batches.py)")
  try:
    run(a.run, a.name, a.steps)
  except (ValueError, OSError) as e:  # no batches, no audax/checkpoint_0 yet, ...
    # (record_batches.py, audax_side.py first)
    raise SystemExit(f"[ours_side] {e}") from None


if __name__ == "__main__":
  main()
