r"""Exports the frozen encoder of a training run as a SavedModel (see cola_tf.frozen_encoder).

  python -m cola_tf.export --model_dir DIR [--output OUT] [--checkpoint DIR/ckpt-N]
  python -m cola_tf.export --model_dir DIR --output OUT --random_init_seed S

`--random_init_seed S` exports a fresh, untrained initialisation of the run's encoder, seeded
with S (the control arm of a linear probe: same architecture, frontend and config).
"""
import argparse
import os

from cola_tf import distribute
from cola_tf import logs
from cola_tf.frozen_encoder import export


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model_dir", required=True,
                 help="training model_dir (operative config + checkpoints)")
  p.add_argument("--output", help="where to write the SavedModel (default MODEL_DIR/export)")
  p.add_argument("--checkpoint", help="a checkpoint prefix (default: the latest)")
  p.add_argument("--random_init_seed", type=int,
                 help="export the untrained encoder initialised with this seed instead")
  a = p.parse_args(argv)
  output = a.output or os.path.join(a.model_dir, "export")
  meta = export(a.model_dir, output, a.checkpoint, random_init_seed=a.random_init_seed)
  logs.log(f"exported {meta['encoder']} at step {meta['training_step']} "
           f"({meta['embedding_size']}-d embeddings) to {output}")


if __name__ == "__main__":
  distribute.initialise_devices_quietly()
  main()
