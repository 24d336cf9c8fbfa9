"""Paths and writes that work on any tf.io.gfile filesystem (local disk, gs://, ram://)."""
import os

import tensorflow as tf


def is_url(path):
  """gs://, ram://, s3://...: a filesystem with no local notion of a working directory."""
  return "://" in path


def absolute(path):
  """The path made absolute (URLs are already)."""
  return path if is_url(path) else os.path.abspath(path)


def atomic_write(path, data):
  """Writes `data` (str or bytes) beside `path`, then renames it over `path`, so a reader
  never sees a partial file (a rename of a single file works on every filesystem)."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)
  tf.io.gfile.rename(tmp, path, overwrite=True)
