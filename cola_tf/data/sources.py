"""Where clips come from: the source registry (`SOURCES`, `register_source`; listed once, in
docs/architecture.md), the `Source` interface, and the file-list sources (folders, CSV
manifests, Speech Commands trees). Every source yields clips sharded per input pipeline (one
per host), so each host reads only its own part; `tfrecord_source`, `tfds_source` and
`synthetic` define the others, and importing `cola_tf.data` registers them all. The trainer,
`make_tfrecords` and the tests take any registered source.
"""
import csv
import os

import gin
import numpy as np
import tensorflow as tf

from cola_tf import SAMPLE_RATE
from cola_tf import files as files_lib
from cola_tf.data import audio as audio_lib


AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")


SOURCES = {}  # class name -> class: the one list of sources


def register_source(cls):
  """Class decorator: adds a Source subclass to `SOURCES` (by its class name)."""
  if not (isinstance(cls, type) and issubclass(cls, Source)):
    raise TypeError(f"register_source: {cls!r} is not a Source subclass")
  if cls.__name__ in SOURCES:
    raise ValueError(f"register_source: {cls.__name__} is registered already")
  if "example" not in vars(cls):
    raise TypeError(f"register_source: {cls.__name__} defines no example(root) classmethod "
                    "(a small corpus in its layout: the tests train from every source so)")
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
  it) or overrides `clips` itself (TFDSSource). A registered source also defines
  `example(root)` (a classmethod, its own: not inherited).
  """

  @classmethod
  def example(cls, root):
    """Writes a small corpus in this source's layout under `root` and returns the gin
    bindings that make `train.source` read it: the registry's one statement of each layout
    (the tests train from every registered source through it)."""
    raise NotImplementedError(f"{cls.__name__} must define example(root)")

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
    return usable(ds)

  def waveforms(self, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
                deterministic=False, native_only=False, max_seconds=None):
    """One pass of the usable clips' waveforms (see `clips`)."""
    return self.clips(sample_rate, num_shards, shard_index, seed, shuffle, deterministic,
                      native_only, max_seconds).map(_waveform_only)


def write_example_tones(folder, count, seconds=2.0, base_hz=200.0):
  """`count` WAV tones (base_hz + 40 Hz apart, with a little noise) in folder; their paths."""
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  tf.io.gfile.makedirs(folder)
  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  paths = []
  for i in range(count):
    tone = 0.5 * np.sin(2 * np.pi * (base_hz + 40 * i) * t) + 0.01 * rng.standard_normal(t.size)
    paths.append(os.path.join(folder, f"tone{i:03d}.wav"))
    sf.write(paths[-1], tone.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
  return paths


def usable(decoded):
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

    return usable(ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic))


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

  @classmethod
  def example(cls, root):
    write_example_tones(os.path.join(root, "audio"), 8)
    return [f"FolderSource.root = '{root}/audio'"]


def read_manifest(manifest, columns, setting):
  """[(line, path, row)] of a CSV manifest whose header has `columns` (the first: the files
  column); relative paths resolved against the manifest's folder. Every manifest-like
  reader goes through it (ManifestSource, the online evaluation's ManifestEvalSet); errors
  name `setting` (the binding) or the manifest and line."""
  if not tf.io.gfile.exists(manifest) or tf.io.gfile.isdir(manifest):
    raise ValueError(f"{setting}: {manifest!r} is not a file")
  base = os.path.dirname(files_lib.absolute(manifest))
  rows = []
  with tf.io.gfile.GFile(manifest) as f:
    reader = csv.DictReader(f)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
      raise ValueError(f"{manifest}: line 1: expected a header with the column(s) {missing}, "
                       f"got {reader.fieldnames}")
    for line, row in enumerate(reader, start=2):
      path = (row.get(columns[0]) or "").strip()
      if not path:
        raise ValueError(f"{manifest}: line {line}: empty {columns[0]!r} value")
      if not (files_lib.is_url(path) or os.path.isabs(path)):
        path = os.path.join(base, path)
      rows.append((line, path, row))
  if not rows:
    raise ValueError(f"{manifest}: no rows")
  return rows, reader.fieldnames


@register_source
@gin.configurable
class ManifestSource(FileListSource):
  """A CSV manifest with a `files` column (and optional `labels`), as audax writes them;
  other columns (audax's `duration`) are not read: clip lengths come from decoding.

  Relative paths are resolved against the manifest's folder. A missing file or an empty path
  is an error naming the manifest line.
  """

  def __init__(self, manifest, check_files=True):
    rows, header = read_manifest(manifest, ("files",), "ManifestSource.manifest")
    if check_files:
      for line, path, _ in rows:
        if not tf.io.gfile.exists(path):
          raise ValueError(f"{manifest}: line {line}: file not found: {path}")
    labels = [row.get("labels") for _, _, row in rows] if "labels" in header else None
    super().__init__([path for _, path, _ in rows], labels, description=manifest)

  @classmethod
  def example(cls, root):
    paths = write_example_tones(os.path.join(root, "audio"), 8)
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w") as f:
      f.write("files,labels\n" + "".join(f"audio/{os.path.basename(p)},tone{i % 2}\n"
                                           for i, p in enumerate(paths)))
    return [f"ManifestSource.manifest = '{manifest}'"]


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

  @classmethod
  def example(cls, root):
    write_speech_commands_tones(os.path.join(root, "speech_commands"), ("yes", "no", "up"), 10)
    return [f"SpeechCommandsSource.root = '{root}/speech_commands'"]


def write_speech_commands_tones(root, words, num_speakers):
  """A Speech Commands v0.02 tree of 1 s tones (word i, speaker j: 300 + 200 i + 10 j Hz),
  speaker 0 in validation_list.txt, speaker 1 in testing_list.txt, and a
  _background_noise_ clip: the layout without speech."""
  import soundfile as sf  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
  lists = {"validation_list.txt": [], "testing_list.txt": []}
  for w_i, word in enumerate(words):
    tf.io.gfile.makedirs(os.path.join(root, word))
    for s_i in range(num_speakers):
      rel = f"{word}/{s_i:08x}_nohash_0.wav"
      tone = 0.5 * np.sin(2 * np.pi * (300 + 200 * w_i + 10 * s_i) * t)
      sf.write(os.path.join(root, rel), (tone + 0.01 * rng.standard_normal(SAMPLE_RATE))
               .astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
      if s_i < 2:
        lists[("validation_list.txt", "testing_list.txt")[s_i]].append(rel)
  tf.io.gfile.makedirs(os.path.join(root, "_background_noise_"))
  sf.write(os.path.join(root, "_background_noise_", "white_noise.wav"),
           (0.1 * rng.standard_normal(5 * SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE,
           subtype="PCM_16")
  for name, rels in lists.items():
    with open(os.path.join(root, name), "w") as f:
      f.write("".join(r + "\n" for r in sorted(rels)))
