"""The COLA input pipeline: source -> decode -> two random crops -> waveform normalisation
(+ noise on the positive) -> log-mel -> SpecAugment (on the positive).

Everything random is stateless and seeded from `seed`, so the pipeline is reproducible up to
the order in which parallel reads finish (`deterministic=True` removes that too). Files that
cannot be decoded are dropped and tallied in `audio.BAD_FILES`.
"""
import hashlib
import sys

import gin
import tensorflow as tf

from cola_tf import augment
from cola_tf.data import audio

POSITIVE_NOISE_STDDEV = 0.001  # audax's `contrastive_noise` default
# Longer clips give one random window of this many seconds per pass (only that is decoded):
# AudioSet's 10 s clips are whole; a 3-hour file costs what a 30 s file costs.
MAX_CLIP_SECONDS = 30.0
LONG_CLIPS_NAMED = 20

def _shard(input_context):
  if input_context is None:
    return 1, 0
  return input_context.num_input_pipelines, input_context.input_pipeline_id


def decoded_clips(source, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
                  deterministic=False, native_only=False):
  """One pass over the source's usable clips as whole float32 mono waveforms."""
  return source.waveforms(sample_rate, num_shards, shard_index, seed=seed, shuffle=shuffle,
                          deterministic=deterministic, native_only=native_only)


SILENCE_PEAK = 1e-4  # below this peak (-80 dBFS) a clip counts as silent
SILENCE_CHECKED = 32  # clips read for the silence warning


def check_usable(source, sample_rate, log=None):
  """Fails before training if no clip of the source decodes, and warns (`log`) when most of
  its first clips are silent: COLA cannot tell silent crops apart, so such a corpus trains
  to chance."""
  peaks = [float(tf.reduce_max(tf.abs(w))) if tf.size(w) else 0.0 for w in source.waveforms(
      sample_rate, shuffle=False, deterministic=True,
      max_seconds=MAX_CLIP_SECONDS).take(SILENCE_CHECKED)]
  if not peaks:
    raise ValueError(f"no usable audio in {source.describe()}: {audio.BAD_FILES.summary()}")
  silent = sum(p < SILENCE_PEAK for p in peaks)
  if log is not None and silent > len(peaks) // 2:
    log(f"WARNING: {silent} of the first {len(peaks)} clips of {source.describe()} are "
        f"silent (peak below {SILENCE_PEAK:g}): crops of silence cannot be told apart, so "
        "such a corpus trains to chance; check the data")


def name_long_clips(clips, max_seconds, max_named=LONG_CLIPS_NAMED):
  """(waveform, name, seconds) -> waveform, naming the first `max_named` clips longer than
  `max_seconds` once each in the log (in the graph: works on tf.data service workers too)."""
  def step(state, clip):
    named, told_more = state
    waveform, name, seconds = clip
    new = (seconds > max_seconds) & tf.logical_not(tf.reduce_any(tf.equal(named, name)))
    room = tf.size(named) < max_named

    def name_it():
      tf.print("[cola_tf] long clip", name, "(", seconds, "s): each pass reads one random",
               max_seconds, "s window of it", output_stream=sys.stdout)
      return tf.concat([named, [name]], 0), told_more

    def say_more():
      tf.print("[cola_tf] more long clips; only the first", max_named, "are named",
               output_stream=sys.stdout)
      return named, tf.constant(True)

    state = tf.cond(new & room, name_it,
                    lambda: tf.cond(new & tf.logical_not(told_more), say_more,
                                    lambda: (named, told_more)))
    return state, waveform

  return clips.scan((tf.constant([], tf.string), tf.constant(False)), step)


def _clip_stream(source, sample_rate, num_shards, shard_index, stream, cache, deterministic,
                 native_only, max_clip_seconds):
  """Decoded clips of this input pipeline's shard, forever (long ones cut and named)."""
  def one_pass(shuffle, deterministic):
    return source.clips(sample_rate, num_shards, shard_index, seed=stream, shuffle=shuffle,
                        deterministic=deterministic, native_only=native_only,
                        max_seconds=max_clip_seconds)
  if cache:  # the decoded clips (one window of a long clip) are kept; passes reshuffle them
    ds = one_pass(False, True).cache(cache if isinstance(cache, str) else "")
    ds = ds.shuffle(max(1, len(source) // num_shards), seed=stream,
                    reshuffle_each_iteration=True).repeat()
  else:
    ds = one_pass(True, deterministic).repeat()
  if not native_only:  # (under the service's dynamic sharding a worker's pass may be empty)
    ds = ds.concatenate(_ran_dry(source, ds.element_spec))  # repeat() ends on an empty pass
  if max_clip_seconds:
    return name_long_clips(ds, max_clip_seconds)
  return ds.map(lambda waveform, name, seconds: waveform)


def _ran_dry(source, element_spec):
  """A dataset that fails with one clear message when reached: `repeat()` stops at a pass
  that gives no clip at all (every file vanished or unreadable), which must not pass as the
  end of training."""
  name = source.describe() if hasattr(source, "describe") else type(source).__name__
  message = (f"the input pipeline ran dry: a whole pass over {name} gave no usable clip "
             "(files deleted, unmounted or unreadable?)")

  def fail(_):
    check = tf.debugging.Assert(False, [message])
    with tf.control_dependencies([check]):
      return tuple(tf.zeros([0] * len(spec.shape), spec.dtype) for spec in element_spec)
  return tf.data.Dataset.from_tensors(0).map(fail)


def seed_stream(seed, shard_index, purpose):
  """A 63-bit seed for one random stream, hashed from (seed, input pipeline, purpose): the
  streams of different hosts, purposes and resumes (seed + start step) never overlap as the
  old `seed * 1000003 + host + small offset` could."""
  digest = hashlib.sha256(f"{int(seed)}/{int(shard_index)}/{purpose}".encode()).digest()
  return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _keyed(ds, random_keys):
  """(key, element): keys 0, 1, 2... (reproducible), or, on tf.data service workers, random
  keys drawn per worker, so that no two workers produce the same crops or noise."""
  if random_keys:
    return tf.data.Dataset.zip((tf.data.Dataset.random(), ds))
  return ds.enumerate()


@gin.configurable(denylist=["source", "input_context", "global_batch_size", "frontend", "seed",
                            "crop_seconds"])
def pair_dataset(source, input_context, global_batch_size, frontend, seed=0,
                 crop_seconds=0.96, spec_augment="positive",
                 positive_noise_stddev=POSITIVE_NOISE_STDDEV, short_clips="centre_two_crops",
                 max_clip_seconds=MAX_CLIP_SECONDS, cache=False,
                 pair_shuffle_buffer=1024, deterministic=False, data_service_address=None,
                 data_service_job="cola_tf"):
  """Batches of {'anchor', 'positive'}: [per_replica_batch, frames, mels] float32, forever.

  Each crop goes through `frontend` (waveform normalisation, log-mel); the positive's
  normalised waveform gets N(0, positive_noise_stddev^2) noise first (the recipe's 0.001;
  0 turns it off). `short_clips`: how clips shorter than needed are padded before cropping
  (see `augment.random_crop_pair`). Clips longer than `max_clip_seconds` give one random
  window of that length per pass, and only the window is decoded (None: whole clips); the
  first few such clips are named once.

  Sharded per input pipeline (one per host under multi-worker / TPU pods), so each host
  reads only its own files. `cache=True` keeps the decoded clips in memory, `cache='/path'`
  on disk (small corpora); otherwise files are re-read each epoch in a fresh order and the
  (small) crop pairs, not the long clips, go through a shuffle buffer of
  `pair_shuffle_buffer`.

  `data_service_address` ('grpc://host:port' of a tf.data service dispatcher) moves the
  whole pipeline onto the service's workers, one job per host ('<job>-<run>-<host index>';
  <run> is hashed from the seed, which the trainer offsets by the step it starts from, so a
  resumed run never meets a job of its earlier dataset graph on the dispatcher), with
  dynamic sharding: the dispatcher hands each file or shard to one worker at a time, and
  crops and noise come from per-worker random keys (no two workers repeat a stream). The
  workers' graph holds no Python, so they read pcm16 TFRecords (`make_tfrecords --format
  pcm16`, recommended) and 16-bit PCM WAV at the frontend's rate only; other clips are
  dropped and named on the worker's stderr.
  """
  _check_pair_settings(positive_noise_stddev, spec_augment, max_clip_seconds)
  batch = global_batch_size
  if input_context is not None:
    batch = input_context.get_per_replica_batch_size(global_batch_size)
  num_shards, shard_index = _shard(input_context)
  crop_samples = int(round(crop_seconds * frontend.sample_rate))
  autotune = tf.data.AUTOTUNE
  def stream(purpose):
    return seed_stream(seed, shard_index, purpose)

  service = data_service_address is not None
  ds = _clip_stream(source, frontend.sample_rate, num_shards, shard_index, stream("clips"),
                    cache, deterministic, service, max_clip_seconds)

  crop = _cropper(frontend, crop_samples, stream("crops"), short_clips)
  ds = _keyed(ds, service).map(crop, num_parallel_calls=autotune,
                                       deterministic=deterministic)
  if not cache and pair_shuffle_buffer > 1:
    ds = ds.shuffle(pair_shuffle_buffer, seed=stream("pair shuffle"))
  features = _featurizer(frontend, stream("noise"), stream("spec augment"),
                         positive_noise_stddev, spec_augment)
  ds = _keyed(ds.batch(batch, drop_remainder=True), service)
  ds = ds.map(features, num_parallel_calls=autotune, deterministic=deterministic)
  if service:
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=data_service_address,
        job_name=f"{data_service_job}-{stream('job') % 10**12:012d}-{shard_index}"))
  options = tf.data.Options()
  options.deterministic = deterministic
  return ds.with_options(options).prefetch(autotune)


def _cropper(frontend, crop_samples, stream, short_clips):
  """(key, waveform) -> the clip normalised as the frontend says, two random crops [2, n]."""
  def crop(index, waveform):
    return augment.random_crop_pair(frontend.normalize_clip(waveform), crop_samples,
                                    tf.stack([stream, index]), short_clips)
  return crop


def _featurizer(frontend, noise_stream, mask_stream, positive_noise_stddev, spec_augment):
  """(key, pairs [b, 2, samples]) -> {'anchor', 'positive'} log-mels: noise on the
  positive's normalised waveform, then the frontend, then SpecAugment as configured."""
  def features(index, pairs):
    noise = None
    if positive_noise_stddev > 0:
      noise = positive_noise_stddev * tf.random.stateless_normal(
          tf.shape(pairs[:, 1]), seed=tf.stack([noise_stream, index]))
    anchor, positive = augment.augment_pair(frontend(pairs[:, 0]), frontend(pairs[:, 1], noise),
                                            tf.stack([mask_stream, index]), spec_augment)
    return {"anchor": anchor, "positive": positive}
  return features


def _check_pair_settings(positive_noise_stddev, spec_augment, max_clip_seconds):
  if positive_noise_stddev < 0:
    raise ValueError(f"pair_dataset.positive_noise_stddev must be >= 0, got "
                     f"{positive_noise_stddev}")
  if spec_augment not in augment.SPEC_AUGMENT_MODES:
    raise ValueError(f"pair_dataset.spec_augment must be one of {augment.SPEC_AUGMENT_MODES}, "
                     f"got {spec_augment!r}")
  if max_clip_seconds is not None and max_clip_seconds <= 0:
    raise ValueError(f"pair_dataset.max_clip_seconds must be > 0 seconds (or None: whole "
                     f"clips), got {max_clip_seconds}")
