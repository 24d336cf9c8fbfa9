"""The TFRecord layout that make_tfrecords writes and TFRecordSource reads: shard names, the
Example's features, the index file, and counting the records of shards."""

import tensorflow as tf


FEATURES = {
    "audio": tf.io.FixedLenFeature([], tf.string),
    "format": tf.io.FixedLenFeature([], tf.string, default_value="flac"),
    "name": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "label": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "duration": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
}
INDEX = "index.json"  # beside the shards: {shard name: records}, the format, what was skipped


def shard_name(index, total):
  return f"shard-{index:05d}-of-{total:05d}.tfrecord"


def example(path, label, data, fmt, duration):
  def strings(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
  feature = {
      "audio": strings(data), "format": strings(fmt.encode()), "name": strings(path.encode()),
      "label": strings((label or "").encode()),
      "duration": tf.train.Feature(float_list=tf.train.FloatList(value=[duration])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()



