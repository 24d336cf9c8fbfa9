r"""Records the batches of a side-by-side training run: our input pipeline's log-mel pairs
(crops, waveform normalisation, the positive's noise, SpecAugment on the positive), exactly
as our trainer would receive them, and the settings both sides train at.

  python experiments/audax_trajectories/record_batches.py --run RUN \
      --manifest runs/generated_speech/data/pretrain-unlabeled+train.csv [--steps 300]

Writes RUN/anchors.npy and RUN/positives.npy ([steps, pairs, frames, mels] float32) and
RUN/settings.json: the gin files and bindings (ours_side.py parses the same), the ConvNeXt
depths and widths, the head's size and the optimizer's peak rate, weight decay and
schedule in audax's terms (warmup epochs of `steps_per_epoch` steps, then cosine to
`epochs`). The default config is the generated-speech experiment's ConvNeXt-atto arm at its
3000-step curve run's schedule (warmup 500 steps).
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import trajectory  # noqa: E402

ARM = os.path.join(HERE, "..", "generated_speech", "convnext_arm.gin")


def settings_from_gin(gin_files, gin_params, total_steps, warmup_steps):
  """The settings both sides train at, read from the parsed config (ours is the source)."""
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf import frontend as frontend_lib  # pylint: disable=import-outside-toplevel
  from cola_tf.encoders import convnext  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  if total_steps % warmup_steps:
    raise ValueError(f"--total_steps {total_steps} must be a multiple of --warmup_steps "
                     f"{warmup_steps} (audax counts its schedule in epochs of that length)")
  name = gin.query_parameter("build_encoder.name")
  if name not in convnext.CONVNEXT_CONFIGS:
    raise ValueError(f"build_encoder.name = {name!r}: the side-by-side runs ConvNeXt only")
  batch = gin.query_parameter("train.global_batch_size")
  reference = gin.query_parameter("build_adamw.reference_batch_size")
  peak = gin.query_parameter("build_adamw.learning_rate") * (batch / reference if reference
                                                             else 1.0)
  frames, mels = configuration.model_input_shape(frontend_lib.LogMelFrontend(),
                                                 gin.query_parameter("train.crop_seconds"))
  depths, dims = convnext.CONVNEXT_CONFIGS[name]
  return {"gin_files": list(gin_files), "gin_params": list(gin_params), "encoder": name,
          "depths": depths, "dims": dims, "global_batch_size": batch,
          "embedding_dim": gin.query_parameter("ColaModel.embedding_dim"),
          "frames": int(frames), "mels": int(mels), "peak_learning_rate": peak,
          "weight_decay": gin.query_parameter("build_adamw.weight_decay"),
          "total_steps": total_steps, "warmup_steps": warmup_steps,
          "steps_per_epoch": warmup_steps, "warmup_epochs": 1,
          "epochs": total_steps // warmup_steps, "init_seed": 0}


def record(run_dir, gin_files, gin_params, steps, total_steps, warmup_steps, seed):
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf import frontend as frontend_lib  # pylint: disable=import-outside-toplevel
  from cola_tf.data import pipeline  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import training  # pylint: disable=import-outside-toplevel
  params = list(gin_params) + [f"train.total_steps = {total_steps}",
                               f"build_adamw.warmup_steps = {warmup_steps}",
                               f"train.seed = {seed}"]
  source = training.configured_source(gin_files, params)
  settings = settings_from_gin(gin_files, params, total_steps, warmup_steps)
  frontend = frontend_lib.LogMelFrontend()
  batch = settings["global_batch_size"]
  dataset = pipeline.pair_dataset(source, None, batch, frontend, seed=seed,
                                  crop_seconds=gin.query_parameter("train.crop_seconds"))
  os.makedirs(run_dir, exist_ok=True)
  shape = (steps, batch, settings["frames"], settings["mels"])
  arrays = {k: np.lib.format.open_memmap(os.path.join(run_dir, name + ".tmp"), mode="w+",
                                         dtype=np.float32, shape=shape)
            for k, name in (("anchor", trajectory.ANCHORS), ("positive", trajectory.POSITIVES))}
  for step, pairs in enumerate(dataset.take(steps)):
    for key, array in arrays.items():
      array[step] = pairs[key].numpy()
    if (step + 1) % 50 == 0 or step + 1 == steps:
      print(f"recorded {step + 1}/{steps} batches of {batch} pairs", flush=True)
  for key, name in (("anchor", trajectory.ANCHORS), ("positive", trajectory.POSITIVES)):
    arrays[key].flush()
    os.replace(os.path.join(run_dir, name + ".tmp"), os.path.join(run_dir, name))
  with open(os.path.join(run_dir, trajectory.SETTINGS), "w") as f:
    json.dump(settings, f, indent=1)
  print(f"{run_dir}: {steps} steps; settings {json.dumps(settings)}")


def main():
  from cola_tf import logs  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--run", required=True)
  p.add_argument("--manifest", required=True, help="the pretraining clips (CSV manifest)")
  p.add_argument("--gin_file", action="append", default=None,
                 help=f"default: the ConvNeXt-atto arm ({os.path.relpath(ARM)})")
  p.add_argument("--gin_param", action="append", default=[])
  p.add_argument("--steps", type=int, default=300, help="batches to record")
  p.add_argument("--total_steps", type=int, default=3000, help="the schedule's length")
  p.add_argument("--warmup_steps", type=int, default=500)
  p.add_argument("--seed", type=int, default=0, help="the pipeline's seed (crops, masks)")
  a = p.parse_args()
  try:
    record(a.run, [os.path.abspath(f) for f in a.gin_file or [ARM]],
           [f"MANIFEST = '{os.path.abspath(a.manifest)}'"] + a.gin_param, a.steps,
           a.total_steps, a.warmup_steps, a.seed)
  except ValueError as e:  # a setting: one line naming it
    raise SystemExit(f"[record_batches] {e}") from None


if __name__ == "__main__":
  main()
