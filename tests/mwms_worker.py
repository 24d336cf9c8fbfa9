"""One MultiWorkerMirroredStrategy worker for test_multiworker.py (TF_CONFIG set by the test).

Trains tiny.gin for a few steps and saves the final weights, keyed by variable name.
"""
import sys

import numpy as np

from cola_tf import train as train_lib


def main(model_dir, out_path, gin_file, *params):
  train_lib.parse_gin([gin_file], list(params), None)
  result = train_lib.train(model_dir)
  np.savez(out_path, **{v.name: v.numpy() for v in result["model"].weights})


if __name__ == "__main__":
  main(*sys.argv[1:])
