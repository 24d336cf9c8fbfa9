"""Runs `train()` in a fresh process for tests that need one (multi-worker, or several
logical CPU devices without collectives left over from other tests).

usage: train_worker.py MODEL_DIR OUT_PREFIX LOGICAL_CPUS GIN_FILE [GIN_PARAM ...]
Writes OUT_PREFIX.npz (final weights by variable name) and OUT_PREFIX.json (history).
"""
import json
import sys

import tensorflow as tf


def main(model_dir, out_prefix, logical_cpus, gin_file, *params):
  if int(logical_cpus) > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(logical_cpus))
  import numpy as np  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import training as train_lib  # pylint: disable=import-outside-toplevel
  configuration.parse_gin([gin_file], list(params), None)
  result = train_lib.train(model_dir)
  np.savez(out_prefix + ".npz", **{v.name: v.numpy() for v in result["model"].weights})
  # DropPath masks each replica of this process draws on the same input (training mode).
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  strategy = result["strategy"]
  with strategy.scope():
    drop = encoders.DropPath(0.5)
  masks = strategy.run(tf.function(lambda: drop(tf.ones([64, 1]), training=True)))
  np.save(out_prefix + "-masks.npy",
          np.stack([m.numpy() for m in strategy.experimental_local_results(masks)]))
  with open(out_prefix + ".json", "w") as f:
    json.dump({k: result[k] for k in ("step", "start_step", "loss", "accuracy", "history")}, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
