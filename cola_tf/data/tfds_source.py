"""TFDSSource: a TFDS audio dataset prepared locally (nothing downloaded unasked)."""
import gin
import tensorflow as tf

from cola_tf.data import audio as audio_lib
from cola_tf.data.sources import Source
from cola_tf.data.sources import register_source
from cola_tf.data.sources import usable


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

  @classmethod
  def example(cls, root):
    """Bindings only: under `tfds.testing.mock_data` (as the tests run it) nothing is
    downloaded; outside it, these bindings would download Speech Commands."""
    return ["TFDSSource.name = 'speech_commands'", "TFDSSource.download = True",
            f"TFDSSource.data_dir = '{root}/tfds'"]

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

    return usable(ds.map(to_waveform, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=deterministic))
