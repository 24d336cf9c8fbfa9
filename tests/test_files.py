"""The one atomic write: whole files or nothing, on local disk and on ram:// (as gs://)."""
import os

import pytest
import tensorflow as tf

from cola_tf import files


@pytest.mark.parametrize("root", ["local", "ram://atomic_test"])
def test_atomic_write_replaces_whole_or_keeps_the_old_file(root, tmp_path):
  folder = str(tmp_path) if root == "local" else root
  tf.io.gfile.makedirs(folder)
  path = f"{folder}/report.json"
  files.atomic_write(path, "old")
  files.atomic_write(path, b"new")
  with tf.io.gfile.GFile(path, "rb") as f:
    assert f.read() == b"new"
  with pytest.raises(RuntimeError, match="writer died"):
    with files.atomic_output(path, suffix=".wav") as tmp:
      assert tmp.endswith(".wav") and tmp != path
      with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("writer died")
  with tf.io.gfile.GFile(path, "rb") as f:
    assert f.read() == b"new"  # the failed write left the previous file
  assert tf.io.gfile.listdir(folder) == ["report.json"]  # and no temporary file


def test_atomic_output_for_a_writer_that_takes_a_path(tmp_path):
  path = str(tmp_path / "shard.tfrecord")
  with files.atomic_output(path) as tmp, tf.io.TFRecordWriter(tmp) as w:
    w.write(b"record")
    assert not os.path.exists(path)  # not visible before the writer is done
  assert [r.numpy() for r in tf.data.TFRecordDataset(path)] == [b"record"]
