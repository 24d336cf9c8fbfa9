"""Paths and writes that work on any tf.io.gfile filesystem (local disk, gs://, ram://).

The one atomic write: `atomic_output` for any writer (TFRecordWriter, soundfile, ...),
`atomic_write` for a string or bytes. A reader never sees a partial file, and a write that
fails leaves the previous file (if any) in place.
"""
import contextlib
import os

import tensorflow as tf


def is_url(path):
  """gs://, ram://, s3://...: a filesystem with no local notion of a working directory."""
  return "://" in path


def absolute(path):
  """The path made absolute (URLs are already)."""
  return path if is_url(path) else os.path.abspath(path)


@contextlib.contextmanager
def atomic_output(path, suffix=""):
  """Yields a temporary path beside `path` (ending in `suffix`, for writers that go by the
  extension); renames it over `path` when the block ends without an error, removes it
  otherwise. A rename of a single file is atomic on local disks and whole on object stores."""
  tmp = f"{path}.tmp-{os.getpid()}{suffix}"
  try:
    yield tmp
    tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


def atomic_write(path, data):
  """Writes `data` (str or bytes) to `path` atomically."""
  with atomic_output(path) as tmp, tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data.encode() if isinstance(data, str) else data)
