r"""Exports the frozen encoder of a training run as a SavedModel (see cola_tf.export.frozen_encoder).

  python -m cola_tf.export --model_dir DIR [--output OUT] [--checkpoint DIR/ckpt-N]
  python -m cola_tf.export --model_dir DIR --output OUT --random_init_seed S

`--random_init_seed S` exports a fresh, untrained initialisation of the run's encoder, seeded
with S (the control arm of a linear probe: same architecture, frontend and config).
An existing export is never replaced silently: pass `--overwrite` (and `--output`, when a
checkpoint other than the latest or a random init would replace MODEL_DIR/export).
Errors are one line: exit 2 for arguments and settings, 1 for a failure while writing.
"""
import argparse
import os
import sys

from cola_tf.runtime import preemption  # first: its signal thread must exist before TensorFlow's

if __name__ == "__main__":  # the command line only: imported, it leaves the caller's signals
  preemption.block_signals()
import tensorflow as tf  # noqa: E402

from cola_tf.runtime import distribute
from cola_tf import logs
from cola_tf.export import command
from cola_tf.export.frozen_encoder import check_export_request
from cola_tf.export.frozen_encoder import export


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--model_dir", required=True,
                 help="training model_dir (operative config + checkpoints)")
  p.add_argument("--output", help="where to write the SavedModel (default MODEL_DIR/export)")
  p.add_argument("--checkpoint", help="a checkpoint prefix (default: the latest)")
  p.add_argument("--random_init_seed", type=int,
                 help="export the untrained encoder initialised with this seed instead")
  p.add_argument("--overwrite", action="store_true", help="replace an existing export")
  a = p.parse_args(argv)
  output = a.output or os.path.join(a.model_dir, "export")
  try:
    check_export_request(a.model_dir, a.output, a.checkpoint, a.random_init_seed,
                         a.overwrite)
  except ValueError as e:
    logs.log(f"error: {e}", error=True)
    return 2
  meta, code = command.write_for_command(
      lambda: export(a.model_dir, output, a.checkpoint, random_init_seed=a.random_init_seed),
      output, setting_errors=(ValueError, tf.errors.NotFoundError))
  if code:
    return code
  logs.log(f"exported {meta['encoder']} at step {meta['training_step']} "
           f"({meta['embedding_size']}-d embeddings) to {output}")
  return 0


if __name__ == "__main__":
  distribute.initialise_devices_quietly()
  sys.exit(main())
