"""`cola_metadata.json`, the file that makes a SavedModel folder a cola_tf export.

One reader and one writer for everyone (export, hear_module, the linear probe, hear_eval,
benchmarks). Imports TensorFlow's file API only, so hear_module stays TensorFlow-only.
"""
import hashlib
import json
import os

import tensorflow as tf

METADATA_FILE = "cola_metadata.json"


def path_of(export_dir):
  return os.path.join(export_dir, METADATA_FILE)


def is_export(export_dir):
  return tf.io.gfile.exists(path_of(export_dir))


def read(export_dir, who="cola_tf"):
  """The export's metadata dict; ValueError naming the folder if it is not an export."""
  if not is_export(export_dir):
    raise ValueError(f"{who}: {export_dir!r} is not a cola_tf export (no {METADATA_FILE}); "
                     "create one with `python -m cola_tf.export --model_dir DIR`")
  with tf.io.gfile.GFile(path_of(export_dir)) as f:
    return json.load(f)


def write(export_dir, metadata):
  """Written last by the exporter: its presence marks the export complete."""
  with tf.io.gfile.GFile(path_of(export_dir), "w") as f:
    json.dump(metadata, f, indent=1)


def weights_sha256(variables):
  """A digest of the exported weights (values and shapes, in order): two exports share it
  only if they compute the same embeddings from the same frontend."""
  digest = hashlib.sha256()
  for v in variables:
    value = v.numpy()
    digest.update(str(value.shape).encode() + value.dtype.str.encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def identity(metadata):
  """A short, readable key for the model behind an export, e.g.
  'efficientnet_b0-step200-3f9a0c2d1b': results of different models never share a key.
  Exports written before weights_sha256 existed are keyed by their whole metadata."""
  if "weights_sha256" in metadata:
    keyed = [metadata["weights_sha256"], metadata.get("frontend"), metadata.get("window_samples")]
  else:
    keyed = metadata
  digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()
  step = metadata.get("training_step", -1)
  step = "random-init" if "random init" in str(metadata.get("checkpoint", "")) else f"step{step}"
  return f"{metadata.get('encoder', 'encoder')}-{step}-{digest[:10]}"
