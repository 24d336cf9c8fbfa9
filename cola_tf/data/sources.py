"""Where clips come from. Every source yields encoded clips as (bytes, name, format) for the
pipeline, sharded per input pipeline (one per host) so each host reads only its own part.

* `FolderSource`: every audio file under a folder, recursively, filtered by extension.
* `ManifestSource`: a CSV manifest (audax style): a `files` column, optional `labels` and
  `duration`; paths absolute or relative to the manifest.
* `SpeechCommandsSource`: a Speech Commands v0.02 tree; splits from its list files.
* `TFRecordSource`: TFRecord shards of encoded audio (see `make_tfrecords`).
* `TFDSSource`: a TFDS audio dataset already prepared in a local data_dir (no download
  unless `download=True`).

`source.waveforms(...)` gives one pass of decoded mono float32 clips at the requested rate.
"""
import csv
import json
import os

import gin
import tensorflow as tf

from cola_tf import files as files_lib
from cola_tf.data import audio as audio_lib


AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")


class EncodedSource:
  """A source of encoded clips; `waveforms` decodes them, dropping (and naming) bad ones."""

  def encoded(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    raise NotImplementedError

  def waveforms(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
                deterministic=False, native_only=False):
    """`native_only`: a graph without Python (tf.data service); WAV at `sample_rate` only."""
    decode = audio_lib.decode_native_only if native_only else audio_lib.decode_or_flag
    if not native_only:
      audio_lib.log_decoder_choice()
    ds = self.encoded(num_shards, shard_index, seed=seed, shuffle=shuffle)
    ds = ds.map(lambda contents, name, fmt: decode(contents, name, fmt, sample_rate),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.filter(_is_ok).map(_waveform_only)


def _is_ok(waveform, ok):
  del waveform
  return ok


def _waveform_only(waveform, ok):
  del ok
  return waveform


class FileListSource(EncodedSource):
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

  def encoded(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    """Dataset of (contents, name, format) over this shard's files, one pass."""
    files = self._files
    if len(files) < num_shards:
      raise ValueError(f"{self.describe()} cannot be sharded over {num_shards} input pipelines")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if num_shards > 1:
      ds = ds.shard(num_shards, shard_index)
    if shuffle:
      ds = ds.shuffle(max(1, len(files) // num_shards), seed=seed, reshuffle_each_iteration=True)
    return ds.map(lambda path: (_read_or_empty(path), path, _format_of(path)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)


def _read_or_empty(path):
  """File contents, or b'' if the file vanished or cannot be read (decode flags it)."""
  read = tf.data.Dataset.from_tensors(path).map(tf.io.read_file).ignore_errors()
  return read.concatenate(tf.data.Dataset.from_tensors(tf.constant(b""))).take(1) \
      .get_single_element()


def _format_of(path):
  ext = tf.strings.lower(tf.strings.regex_replace(path, r"^.*\.", ""))
  return tf.where(tf.strings.regex_full_match(path, r".*\.[^/]*"), ext, tf.constant(""))


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


@gin.configurable
class SpeechCommandsSource(FileListSource):
  """Speech Commands v0.02: <root>/<word>/<speaker>_nohash_<n>.wav, splits from
  validation_list.txt and testing_list.txt (train = every other clip). Labels are the words;
  `_background_noise_` is not a word and is left out."""

  def __init__(self, root, split="train"):
    if split not in SPEECH_COMMANDS_SPLITS:
      raise ValueError(f"SpeechCommandsSource.split must be one of {SPEECH_COMMANDS_SPLITS}")
    lists = {}
    for name, list_file in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
      path = os.path.join(root, list_file)
      if not tf.io.gfile.exists(path):
        raise ValueError(f"SpeechCommandsSource: {path} not found (is {root!r} a Speech "
                         "Commands v0.02 root?)")
      with tf.io.gfile.GFile(path) as f:
        lists[name] = {line.strip() for line in f if line.strip()}
    files, labels = [], []
    for word in sorted(w.rstrip("/") for w in tf.io.gfile.listdir(root)):
      word_dir = os.path.join(root, word)
      if word.startswith("_") or not tf.io.gfile.isdir(word_dir):
        continue
      for name in sorted(tf.io.gfile.listdir(word_dir)):
        if not name.endswith(".wav"):
          continue
        rel = f"{word}/{name}"
        clip_split = ("validation" if rel in lists["validation"]
                      else "test" if rel in lists["test"] else "train")
        if split in ("all", clip_split):
          files.append(os.path.join(word_dir, name))
          labels.append(word)
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


@gin.configurable
class TFRecordSource(EncodedSource):
  """TFRecord shards (a glob, local or gs://) of encoded audio, read with parallel interleave.

  Each record: 'audio' (encoded bytes), 'format' ('flac' / 'wav' ...), 'name', 'label',
  'duration' (seconds). `num_records` (for steps per epoch) is read from the shards'
  `_index.json` written by make_tfrecords, or counted.
  """

  def __init__(self, pattern, compression="ZLIB", num_records=None):
    self.shards = sorted(tf.io.gfile.glob(pattern))
    if not self.shards:
      raise ValueError(f"TFRecordSource.pattern: no files match {pattern!r}")
    if compression not in ("ZLIB", "GZIP", ""):
      raise ValueError(f"TFRecordSource.compression must be 'ZLIB', 'GZIP' or '', got "
                       f"{compression!r}")
    self.pattern, self.compression = pattern, compression
    self._num_records = num_records
    index_path = os.path.join(os.path.dirname(pattern), "index.json")
    if num_records is None and tf.io.gfile.exists(index_path):
      with tf.io.gfile.GFile(index_path) as f:
        counts = json.load(f).get("shards", {})
      names = [os.path.basename(s) for s in self.shards]
      if all(n in counts for n in names):
        self._num_records = sum(counts[n] for n in names)

  def __len__(self):
    if self._num_records is None:
      self._num_records = sum(1 for _ in tf.data.TFRecordDataset(
          self.shards, compression_type=self.compression))
    return self._num_records

  def files(self):
    return list(self.shards)

  def describe(self):
    return f"TFRecordSource({self.pattern}: {len(self.shards)} shards, {len(self)} clips)"

  def encoded(self, num_shards=1, shard_index=0, seed=0, shuffle=True):
    if len(self.shards) < num_shards:
      raise ValueError(f"{len(self.shards)} TFRecord shards cannot be split over {num_shards} "
                       "input pipelines: write at least one shard per host")
    ds = tf.data.Dataset.from_tensor_slices(self.shards)
    if num_shards > 1:
      ds = ds.shard(num_shards, shard_index)
    if shuffle:
      ds = ds.shuffle(len(self.shards), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda shard: tf.data.TFRecordDataset(shard, compression_type=self.compression),
        cycle_length=tf.data.AUTOTUNE, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle)

    def parse(record):
      ex = tf.io.parse_single_example(record, TFRECORD_FEATURES)
      return ex["audio"], ex["name"], ex["format"]

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)


@gin.configurable
class TFDSSource:
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
    self.rate = int(getattr(feature, "sample_rate", None) or 16000)
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

  def waveforms(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
                deterministic=False, native_only=False):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    if native_only and self.rate != sample_rate:
      raise ValueError(f"{self.describe()}: tf.data service workers cannot resample "
                       f"{self.rate} Hz to {sample_rate} Hz (that runs in Python)")
    read_config = tfds.ReadConfig(
        shuffle_seed=seed, interleave_cycle_length=tf.data.AUTOTUNE,
        input_context=tf.distribute.InputContext(num_shards, shard_index, 1))
    ds = self.builder.as_dataset(split=self.split, shuffle_files=shuffle,
                                 read_config=read_config)

    def to_waveform(example):
      waveform = tf.cast(example[self.audio_key], tf.float32) * self.scale
      if waveform.shape.rank == 2:
        waveform = tf.reduce_mean(waveform, axis=-1)
      if self.rate != sample_rate:
        waveform = audio_lib.resample(waveform, self.rate, sample_rate)
      return waveform

    return ds.map(to_waveform, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic).filter(lambda w: tf.size(w) > 0)
