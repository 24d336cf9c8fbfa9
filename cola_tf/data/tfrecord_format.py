"""The TFRecord layout that make_tfrecords writes and TFRecordSource reads: shard names, the
Example's features, the index file, and counting the records of shards."""
import time
from concurrent import futures

import numpy as np
import tensorflow as tf

from cola_tf import logs
from cola_tf.data import audio as audio_lib


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


def count_records(shards, compression, parallel=32):
  """Records per shard, counted in parallel with a progress line; a truncated or corrupt
  shard counts its readable records and is named."""
  def count(shard):
    ds = tf.data.TFRecordDataset(shard, compression_type=compression)
    try:
      return int(ds.reduce(np.int64(0), lambda n, _: n + 1))
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
      n = int(ds.ignore_errors().reduce(np.int64(0), lambda n, _: n + 1))
      audio_lib.BAD_FILES.report(shard, f"truncated or corrupt after {n} records: the rest is "
                                        f"skipped ({type(e).__name__})")
      return n

  counts, started, last = {}, time.time(), time.time()
  logs.log(f"counting the records of {len(shards)} TFRecord shard(s) (no "
           f"{INDEX}; pass TFRecordSource.num_records to skip this)")
  with futures.ThreadPoolExecutor(max(1, min(parallel, len(shards)))) as pool:
    jobs = {pool.submit(count, s): s for s in shards}
    for job in futures.as_completed(jobs):
      counts[jobs[job]] = job.result()
      if time.time() - last > 10 or len(counts) == len(shards):
        last = time.time()
        logs.log(f"counted {len(counts)}/{len(shards)} shards: "
                 f"{sum(counts.values())} records, {last - started:.0f}s")
  return [counts[s] for s in shards]
