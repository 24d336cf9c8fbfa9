"""Where clips come from. Every source yields encoded clips as (bytes, name, format) for the
pipeline, sharded per input pipeline (one per host) so each host reads only its own part.

* `FolderSource`: every audio file under a folder, recursively, filtered by extension.
* `ManifestSource`: a CSV manifest (audax style): a `files` column, optional `labels` and
  `duration`; paths absolute or relative to the manifest.
* `SpeechCommandsSource`: a Speech Commands v0.02 tree; splits from its list files.
* `TFRecordSource`: TFRecord shards of encoded audio (see `make_tfrecords`).
* `TFDSSource`: a TFDS audio dataset already prepared in a local data_dir (no download
  unless `download=True`).

Every source is a `Source` (the interface, below) and registered in `SOURCES` by
`register_source` (with `data.synthetic.SyntheticSource`, the embedded corpus): the
trainer, `make_tfrecords` and the tests take any registered source.
"""
import csv
import json
import os
import sys
import time
from concurrent import futures

import gin
import numpy as np
import tensorflow as tf

from cola_tf import files as files_lib
from cola_tf import logs
from cola_tf.data import audio as audio_lib


AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")


SOURCES = {}  # class name -> class: the one list of sources


def register_source(cls):
  """Class decorator: adds a Source subclass to `SOURCES` (by its class name)."""
  if not (isinstance(cls, type) and issubclass(cls, Source)):
    raise TypeError(f"register_source: {cls!r} is not a Source subclass")
  if cls.__name__ in SOURCES:
    raise ValueError(f"register_source: {cls.__name__} is registered already")
  SOURCES[cls.__name__] = cls
  return cls


class Source:
  """What the trainer reads clips from (the interface every registered source has):

  * `len(source)`: the number of clips (steps per epoch derive from it);
  * `describe()`: one line for the log;
  * `clips(sample_rate, num_shards, shard_index, seed, shuffle, ...)`: one pass of decoded
    mono float32 clips of this shard as (waveform, name, full seconds), bad clips dropped
    and named; `waveforms(...)`: the waveforms alone;
  * file-based sources (`FileListSource`) also give `files()` and `labels()` (None when
    unlabelled), which `make_tfrecords` writes.
  A subclass implements `encoded(...)` (a dataset of (bytes, name, format): `clips` decodes
  it) or overrides `clips` itself (TFDSSource).
  """

  def __len__(self):
    raise NotImplementedError(f"{type(self).__name__} must define __len__")

  def describe(self):
    return f"{type(self).__name__}({len(self)} clips)"

  def python_free(self):
    """Whether the source decodes without a Python op (what a TPU node's host can run)."""
    return False

  def encoded(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    raise NotImplementedError(f"{type(self).__name__} must define encoded() or clips()")

  def clips(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
            deterministic=False, native_only=False, max_seconds=None):
    """One pass of (waveform, name, full seconds) over the usable clips of this shard.

    `native_only`: a graph without Python (tf.data service); pcm16 and WAV at `sample_rate`
    only. `max_seconds`: clips longer than that give one random window of it (seeded).
    """
    decode = audio_lib.decode_native_only if native_only else audio_lib.decode_clip
    if not native_only:
      audio_lib.log_decoder_choice()
    ds = self.encoded(num_shards, shard_index, seed=seed, shuffle=shuffle).enumerate()

    def fn(index, item):
      contents, name, fmt = item
      key = tf.stack([tf.constant(seed, tf.int64), index])
      return (*decode(contents, name, fmt, sample_rate, max_seconds, key), name)

    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return _usable(ds)

  def waveforms(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
                deterministic=False, native_only=False, max_seconds=None):
    """One pass of the usable clips' waveforms (see `clips`)."""
    return self.clips(sample_rate, num_shards, shard_index, seed, shuffle, deterministic,
                      native_only, max_seconds).map(_waveform_only)


def _usable(decoded):
  """(waveform, ok, seconds, name) -> the ok ones as (waveform, name, seconds)."""
  return decoded.filter(lambda waveform, ok, seconds, name: ok).map(
      lambda waveform, ok, seconds, name: (waveform, name, seconds))


def _waveform_only(waveform, name, seconds):
  del name, seconds
  return waveform


class FileListSource(Source):
  """A fixed list of audio files (with optional labels)."""

  def __init__(self, files, labels=None, description=""):
    self._files = list(files)
    self._labels = None if labels is None else list(labels)
    self._description = description

  def files(self):
    return list(self._files)

  def labels(self):
    return None if self._labels is None else list(self._labels)

  def __len__(self):
    return len(self._files)

  def describe(self):
    return f"{type(self).__name__}({self._description}: {len(self)} files)"

  def paths(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    """Dataset of this shard's file paths, one pass."""
    files = self._files
    if len(files) < num_shards:
      raise ValueError(f"{self.describe()} cannot be sharded over {num_shards} input pipelines")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if num_shards > 1:
      ds = ds.shard(num_shards, shard_index)
    if shuffle:
      ds = ds.shuffle(max(1, len(files) // num_shards), seed=seed, reshuffle_each_iteration=True)
    return ds

  def encoded(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    """Dataset of (contents, name, format) over this shard's files, one pass."""
    return self.paths(num_shards, shard_index, seed, shuffle).map(
        lambda path: (_read_or_empty(path), path, _format_of(path)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)

  def clips(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
            deterministic=False, native_only=False, max_seconds=None):
    """As `Source.clips`; outside the tf.data service each file is opened by
    libsndfile, which reads only the window it needs from a long file."""
    if native_only:
      return super().clips(sample_rate, num_shards, shard_index, seed, shuffle, deterministic,
                           native_only, max_seconds)
    audio_lib.log_decoder_choice()
    ds = self.paths(num_shards, shard_index, seed, shuffle).enumerate()

    def fn(index, path):
      key = tf.stack([tf.constant(seed, tf.int64), index])
      return (*audio_lib.read_file_window(path, sample_rate, max_seconds, key), path)

    return _usable(ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic))


def _read_or_empty(path):
  """File contents, or b'' if the file vanished or cannot be read (decode flags it)."""
  read = tf.data.Dataset.from_tensors(path).map(tf.io.read_file).ignore_errors()
  return read.concatenate(tf.data.Dataset.from_tensors(tf.constant(b""))).take(1) \
      .get_single_element()


def _format_of(path):
  ext = tf.strings.lower(tf.strings.regex_replace(path, r"^.*\.", ""))
  return tf.where(tf.strings.regex_full_match(path, r".*\.[^/]*"), ext, tf.constant(""))


@register_source
@gin.configurable
class FolderSource(FileListSource):
  """Every file under `root` (recursively) whose extension is in `extensions`."""

  def __init__(self, root, extensions=AUDIO_EXTENSIONS):
    if not root or not tf.io.gfile.isdir(root):
      raise ValueError(f"FolderSource.root: {root!r} is not a directory")
    exts = tuple(e.lower().lstrip(".") for e in extensions)
    found = []
    for dirpath, _, names in tf.io.gfile.walk(root):  # any tf.io.gfile filesystem (gs://)
      for name in names:
        if not name.startswith(".") and name.rsplit(".", 1)[-1].lower() in exts:
          found.append(os.path.join(dirpath, name))
    if not found:
      raise ValueError(f"FolderSource: no files with extensions {exts} under {root}")
    super().__init__(sorted(found), description=root)
    self.root = root


@register_source
@gin.configurable
class ManifestSource(FileListSource):
  """A CSV manifest with a `files` column (and optional `labels`, `duration`).

  Relative paths are resolved against the manifest's folder. A missing file, an empty path or
  a non-numeric duration is an error naming the manifest line.
  """

  def __init__(self, manifest, check_files=True):
    if not tf.io.gfile.exists(manifest) or tf.io.gfile.isdir(manifest):
      raise ValueError(f"ManifestSource.manifest: {manifest!r} is not a file")
    base = os.path.dirname(files_lib.absolute(manifest))
    files, labels = [], []
    with tf.io.gfile.GFile(manifest) as f:
      reader = csv.DictReader(f)
      if not reader.fieldnames or "files" not in reader.fieldnames:
        raise ValueError(f"{manifest}: line 1: expected a header with a 'files' column, got "
                         f"{reader.fieldnames}")
      for line, row in enumerate(reader, start=2):
        path = (row.get("files") or "").strip()
        if not path:
          raise ValueError(f"{manifest}: line {line}: empty 'files' value")
        if not (files_lib.is_url(path) or os.path.isabs(path)):
          path = os.path.join(base, path)
        if check_files and not tf.io.gfile.exists(path):
          raise ValueError(f"{manifest}: line {line}: file not found: {path}")
        duration = (row.get("duration") or "").strip()
        if duration:
          try:
            float(duration)
          except ValueError:
            raise ValueError(f"{manifest}: line {line}: 'duration' is not a number: "
                             f"{duration!r}") from None
        files.append(path)
        labels.append(row.get("labels"))
    if not files:
      raise ValueError(f"{manifest}: no rows")
    has_labels = "labels" in reader.fieldnames
    super().__init__(files, labels if has_labels else None, description=manifest)


SPEECH_COMMANDS_SPLITS = ("train", "validation", "test", "all")


def speech_commands_clips(root):
  """[(path, word, split)] of a Speech Commands v0.02 tree, sorted; split is 'validation' or
  'test' when validation_list.txt / testing_list.txt name the clip, else 'train'. The one
  reader of those lists (the trainer's source, the probes' tasks, the HEAR task writer)."""
  lists = {}
  for name, list_file in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
    path = os.path.join(root, list_file)
    if not tf.io.gfile.exists(path):
      raise ValueError(f"{path} not found (is {root!r} a Speech Commands v0.02 root?)")
    with tf.io.gfile.GFile(path) as f:
      lists[name] = {line.strip() for line in f if line.strip()}
  clips = []
  for word in sorted(w.rstrip("/") for w in tf.io.gfile.listdir(root)):
    word_dir = os.path.join(root, word)
    if word.startswith("_") or not tf.io.gfile.isdir(word_dir):
      continue
    for name in sorted(tf.io.gfile.listdir(word_dir)):
      if name.endswith(".wav"):
        rel = f"{word}/{name}"
        split = ("validation" if rel in lists["validation"]
                 else "test" if rel in lists["test"] else "train")
        clips.append((os.path.join(word_dir, name), word, split))
  return clips


@register_source
@gin.configurable
class SpeechCommandsSource(FileListSource):
  """Speech Commands v0.02: <root>/<word>/<speaker>_nohash_<n>.wav, splits from
  validation_list.txt and testing_list.txt (train = every other clip). Labels are the words;
  `_background_noise_` is not a word and is left out."""

  def __init__(self, root, split="train"):
    if split not in SPEECH_COMMANDS_SPLITS:
      raise ValueError(f"SpeechCommandsSource.split must be one of {SPEECH_COMMANDS_SPLITS}")
    try:
      clips = speech_commands_clips(root)
    except ValueError as e:
      raise ValueError(f"SpeechCommandsSource: {e}") from None
    chosen = [(path, word) for path, word, s in clips if split in ("all", s)]
    files, labels = [p for p, _ in chosen], [w for _, w in chosen]
    if not files:
      raise ValueError(f"SpeechCommandsSource: no {split} clips under {root}")
    super().__init__(files, labels, description=f"{root} [{split}]")


# TFRecord layout written by make_tfrecords.
TFRECORD_FEATURES = {
    "audio": tf.io.FixedLenFeature([], tf.string),
    "format": tf.io.FixedLenFeature([], tf.string, default_value="flac"),
    "name": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "label": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "duration": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
}
TFRECORD_INDEX = "index.json"


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
    index = _read_index(os.path.join(os.path.dirname(pattern), TFRECORD_INDEX), self.shards)
    if index is None:
      self.record_format = _first_record_format(self.shards, compression)
    else:
      self._counts = [index["shards"][os.path.basename(s)] for s in self.shards]
      if index.get("format") != "copy":  # 'copy': each record keeps its file's format
        self.record_format = index.get("format")

  def shard_counts(self):
    """Records per shard (from index.json, or counted once in parallel)."""
    if self._counts is None:
      self._counts = count_records(self.shards, self.compression, self.parallel_counts)
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
      ex = tf.io.parse_single_example(record, TFRECORD_FEATURES)
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

    return _usable(ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic))


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
    return tf.io.parse_single_example(record, TFRECORD_FEATURES)["format"].numpy().decode()
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
           f"{TFRECORD_INDEX}; pass TFRecordSource.num_records to skip this)")
  with futures.ThreadPoolExecutor(max(1, min(parallel, len(shards)))) as pool:
    jobs = {pool.submit(count, s): s for s in shards}
    for job in futures.as_completed(jobs):
      counts[jobs[job]] = job.result()
      if time.time() - last > 10 or len(counts) == len(shards):
        last = time.time()
        logs.log(f"counted {len(counts)}/{len(shards)} shards: "
                 f"{sum(counts.values())} records, {last - started:.0f}s")
  return [counts[s] for s in shards]


@register_source
@gin.configurable
class TFDSSource(Source):
  """A TFDS audio dataset (e.g. 'speech_commands') prepared in `data_dir`.

  Nothing is downloaded unless `download=True`: a dataset that is not prepared locally is an
  error saying so. Integer PCM is scaled to [-1, 1]; another sample rate is resampled.
  """

  def __init__(self, name, split="train", data_dir=None, download=False, audio_key="audio"):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    self.builder = tfds.builder(name, data_dir=data_dir)
    if not self.builder.is_prepared():
      if not download:
        raise ValueError(f"TFDSSource: TFDS dataset {name!r} is not prepared in "
                         f"{self.builder.data_dir}; set TFDSSource.data_dir to where it is, or "
                         "TFDSSource.download = True to download and prepare it")
      self.builder.download_and_prepare()
    feature = self.builder.info.features[audio_key]
    self.name, self.split, self.audio_key = name, split, audio_key
    self.rate = int(getattr(feature, "sample_rate", None) or audio_lib.SAMPLE_RATE)
    self.scale = 1.0 / 32768.0 if feature.dtype in (tf.int16, "int16") else 1.0
    self._len = None

  def __len__(self):
    if self._len is None:
      try:
        self._len = int(self.builder.info.splits[self.split].num_examples)
      except KeyError:  # split sizes not recorded: count once
        self._len = sum(1 for _ in self.builder.as_dataset(split=self.split))
    return self._len

  def describe(self):
    return f"TFDSSource({self.name}[{self.split}]: {len(self)} clips at {self.rate} Hz)"

  def clips(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
            deterministic=False, native_only=False, max_seconds=None):
    """As `Source.clips` (TFDS decodes whole clips; the window is cut after)."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    if native_only and self.rate != sample_rate:
      raise ValueError(f"{self.describe()}: tf.data service workers cannot resample "
                       f"{self.rate} Hz to {sample_rate} Hz (that runs in Python)")
    read_config = tfds.ReadConfig(
        shuffle_seed=seed, interleave_cycle_length=tf.data.AUTOTUNE,
        input_context=tf.distribute.InputContext(num_shards, shard_index, 1))
    ds = self.builder.as_dataset(split=self.split, shuffle_files=shuffle,
                                 read_config=read_config).enumerate()
    max_samples = max_seconds and int(round(max_seconds * sample_rate))

    def to_waveform(index, example):
      waveform = tf.cast(example[self.audio_key], tf.float32) * self.scale
      if waveform.shape.rank == 2:
        waveform = tf.reduce_mean(waveform, axis=-1)
      seconds = tf.cast(tf.shape(waveform)[0], tf.float32) / self.rate
      if self.rate != sample_rate:
        waveform = audio_lib.resample(waveform, self.rate, sample_rate)
      key = tf.stack([tf.constant(seed, tf.int64), index])
      waveform = audio_lib.random_window(waveform, max_samples, key)
      name = tf.strings.join([f"{self.name}[{self.split}]#", tf.strings.as_string(index)])
      return waveform, tf.size(waveform) > 0, seconds, name

    return _usable(ds.map(to_waveform, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=deterministic))
