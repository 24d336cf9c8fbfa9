"""TFRecordSource: TFRecord shards written by make_tfrecords (pcm16 decoded without Python),
their index.json, and counting records when there is none."""
import json
import os
import sys

import gin
import tensorflow as tf

from cola_tf.data import audio as audio_lib
from cola_tf.data import tfrecord_format
from cola_tf.data.sources import Source
from cola_tf.data.sources import register_source
from cola_tf.data.sources import usable




@register_source
@gin.configurable
class TFRecordSource(Source):
  """TFRecord shards (a glob, local or gs://) of encoded audio, read with parallel interleave.

  Each record: 'audio' (pcm16 bytes or an encoded file), 'format' ('pcm16', 'flac', 'wav'...),
  'name', 'label', 'duration' (seconds). Shards of pcm16 records are decoded by a graph with
  no Python (the layout for TPU pods and the tf.data service).

  Record counts (for steps per epoch, and to notice a shard that ends early) come from
  `num_records`, else from `index.json` beside the shards (written by make_tfrecords; every
  matched shard must be listed there), else they are counted once, shards in parallel.
  A truncated or corrupt shard never stops a run: the rest of that shard is skipped and
  named, with the number of records lost, on stderr.
  """

  def __init__(self, pattern, compression="ZLIB", num_records=None, parallel_counts=32):
    self.shards = sorted(tf.io.gfile.glob(pattern))
    if not self.shards:
      raise ValueError(f"TFRecordSource.pattern: no files match {pattern!r}")
    if compression not in ("ZLIB", "GZIP", ""):
      raise ValueError(f"TFRecordSource.compression must be 'ZLIB', 'GZIP' or '', got "
                       f"{compression!r}")
    self.pattern, self.compression = pattern, compression
    self.parallel_counts = parallel_counts
    self._num_records = num_records
    self._counts = None
    self.record_format = None
    index = _read_index(os.path.join(os.path.dirname(pattern), tfrecord_format.INDEX), self.shards)
    if index is None:
      self.record_format = _first_record_format(self.shards, compression)
    else:
      self._counts = [index["shards"][os.path.basename(s)] for s in self.shards]
      if index.get("format") != "copy":  # 'copy': each record keeps its file's format
        self.record_format = index.get("format")

  @classmethod
  def example(cls, root):
    from cola_tf.data import sources  # pylint: disable=import-outside-toplevel
    from cola_tf.data import tfrecord_writer  # pylint: disable=import-outside-toplevel
    manifest = sources.ManifestSource.example(root)[0].split("'")[1]
    tfrecord_writer.make_tfrecords(manifest, os.path.join(root, "records"), 2, workers=1)
    return [f"TFRecordSource.pattern = '{root}/records/shard-*.tfrecord'"]

  def shard_counts(self):
    """Records per shard (from index.json, or counted once in parallel)."""
    if self._counts is None:
      self._counts = tfrecord_format.count_records(self.shards, self.compression, self.parallel_counts)
    return list(self._counts)

  def __len__(self):
    if self._num_records is None:
      self._num_records = sum(self.shard_counts())
    return self._num_records

  def files(self):
    return list(self.shards)

  def python_free(self):
    return self.record_format == audio_lib.PCM16

  def describe(self):
    fmt = f", {self.record_format}" if self.record_format else ""
    return f"TFRecordSource({self.pattern}: {len(self.shards)} shards{fmt}, {len(self)} clips)"

  def encoded(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    if len(self.shards) < num_shards:
      raise ValueError(f"{len(self.shards)} TFRecord shards cannot be split over {num_shards} "
                       "input pipelines: write at least one shard per host")
    counts = self._counts if self._counts is not None else [-1] * len(self.shards)
    ds = tf.data.Dataset.from_tensor_slices((self.shards, tf.constant(counts, tf.int64)))
    if num_shards > 1:
      ds = ds.shard(num_shards, shard_index)
    if shuffle:
      ds = ds.shuffle(len(self.shards), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda shard, expected: _records_of(shard, expected, self.compression),
        cycle_length=tf.data.AUTOTUNE, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle)

    def parse(record):
      ex = tf.io.parse_single_example(record, tfrecord_format.FEATURES)
      return ex["audio"], ex["name"], ex["format"]

    # A record with a valid checksum but not an Example (a foreign file) is skipped, logged.
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=not shuffle).ignore_errors(log_warning=True)

  def clips(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
            deterministic=False, native_only=False, max_seconds=None):
    """As `Source.clips`; pcm16 shards are decoded without Python."""
    if self.record_format != audio_lib.PCM16:
      return super().clips(sample_rate, num_shards, shard_index, seed, shuffle, deterministic,
                           native_only, max_seconds)
    if sample_rate != audio_lib.SAMPLE_RATE:
      raise ValueError(f"{self.pattern}: pcm16 records hold {audio_lib.SAMPLE_RATE} Hz audio; "
                       f"the frontend's sample_rate is {sample_rate}")
    ds = self.encoded(num_shards, shard_index, seed=seed, shuffle=shuffle).enumerate()

    def fn(index, item):
      contents, name, _ = item
      key = tf.stack([tf.constant(seed, tf.int64), index])
      return (*audio_lib.decode_pcm16(contents, name, max_seconds, key), name)

    return usable(ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic))


def _read_index(path, shards):
  """make_tfrecords' index.json, checked against the matched shards; None if absent."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    index = json.load(f)
  listed = index.get("shards", {})
  stray = [os.path.basename(s) for s in shards if os.path.basename(s) not in listed]
  if stray:
    raise ValueError(f"{path} does not list {len(stray)} matched shard(s) (e.g. {stray[0]}): "
                     "they were left by another make_tfrecords run; remove them, or rewrite "
                     "the folder with make_tfrecords --overwrite")
  return index


def _first_record_format(shards, compression):
  for record in tf.data.TFRecordDataset(shards[:1], compression_type=compression).take(1):
    return tf.io.parse_single_example(record, tfrecord_format.FEATURES)["format"].numpy().decode()
  return None


def _records_of(shard, expected, compression):
  """The records of one shard; at a truncated or corrupt record the rest of the shard is
  skipped (TFRecordDataset moves to the next file after a DataLossError) and, if fewer than
  `expected` (>= 0) records came, the shard is named on stderr. No Python in the graph."""
  records = tf.data.TFRecordDataset(shard, compression_type=compression).ignore_errors()
  marked = records.map(lambda r: (r, False)).concatenate(
      tf.data.Dataset.from_tensors((tf.constant(b""), True)))

  def count(seen, item):
    record, end = item
    short = end & (expected >= 0) & (seen < expected)

    def report():
      tf.print("[cola_tf] TFRecord shard", shard, "ended after", seen, "of", expected,
               "records (truncated or corrupt): skipped", expected - seen, "records",
               output_stream=sys.stderr)
      return end
    return seen + tf.cast(tf.logical_not(end), tf.int64), \
        (record, tf.cond(short, report, lambda: end))

  return marked.scan(tf.constant(0, tf.int64), count).filter(
      lambda record, end: tf.logical_not(end)).map(lambda record, end: record)
