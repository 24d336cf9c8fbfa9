"""The COLA input pipeline: source -> decode -> two random crops -> waveform normalisation
(+ noise on the positive) -> log-mel -> SpecAugment (on the positive).

Everything random is stateless and seeded from `seed`, so the pipeline is reproducible up to
the order in which parallel reads finish (`deterministic=True` removes that too). Files that
cannot be decoded are dropped and tallied in `audio.BAD_FILES`.
"""
import gin
import tensorflow as tf

from cola_tf import augment
from cola_tf.data import audio

POSITIVE_NOISE_STDDEV = 0.001  # audax's `contrastive_noise` default

def _shard(input_context):
  if input_context is None:
    return 1, 0
  return input_context.num_input_pipelines, input_context.input_pipeline_id


def decoded_clips(source, sample_rate, num_shards=1, shard_index=0, seed=0, shuffle=True,
                  deterministic=False, native_only=False):
  """One pass over the source's usable clips as float32 mono waveforms."""
  return source.waveforms(sample_rate, num_shards, shard_index, seed=seed, shuffle=shuffle,
                          deterministic=deterministic, native_only=native_only)


def check_usable(source, sample_rate):
  """Fails before training if no clip of the source decodes (reads until the first good one)."""
  for _ in decoded_clips(source, sample_rate, shuffle=False, deterministic=True).take(1):
    return
  name = source.describe() if hasattr(source, "describe") else repr(source)
  raise ValueError(f"no usable audio in {name}: {audio.BAD_FILES.summary()}")


@gin.configurable(denylist=["source", "input_context", "global_batch_size", "frontend", "seed",
                            "crop_seconds"])
def pair_dataset(source, input_context, global_batch_size, frontend, seed=0,
                 crop_seconds=0.96, spec_augment="positive",
                 positive_noise_stddev=POSITIVE_NOISE_STDDEV, short_clips="centre_two_crops",
                 cache=False,
                 pair_shuffle_buffer=1024, deterministic=False, data_service_address=None,
                 data_service_job="cola_tf"):
  """Batches of {'anchor', 'positive'}: [per_replica_batch, frames, mels] float32, forever.

  Each crop goes through `frontend` (waveform normalisation, log-mel); the positive's
  normalised waveform gets N(0, positive_noise_stddev^2) noise first (the recipe's 0.001;
  0 turns it off). `short_clips`: how clips shorter than needed are padded before cropping
  (see `augment.random_crop_pair`).

  Sharded per input pipeline (one per host under multi-worker / TPU pods), so each host
  reads only its own files. `cache=True` keeps the decoded clips in memory, `cache='/path'`
  on disk (small corpora); otherwise files are re-read each epoch in a fresh order and the
  (small) crop pairs, not the long clips, go through a shuffle buffer of
  `pair_shuffle_buffer`.

  `data_service_address` ('grpc://host:port' of a tf.data service dispatcher) moves the
  whole pipeline onto the service's workers, one job per host ('<job>-<host index>'). Their
  graph holds no Python, so they read 16-bit PCM WAV at the frontend's rate only (folders,
  manifests, or TFRecords written with `make_tfrecords --format wav`); other clips are
  dropped and named on the worker's stderr.
  """
  if positive_noise_stddev < 0:
    raise ValueError(f"pair_dataset.positive_noise_stddev must be >= 0, got "
                     f"{positive_noise_stddev}")
  if spec_augment not in augment.SPEC_AUGMENT_MODES:
    raise ValueError(f"pair_dataset.spec_augment must be one of {augment.SPEC_AUGMENT_MODES}, "
                     f"got {spec_augment!r}")
  batch = global_batch_size
  if input_context is not None:
    batch = input_context.get_per_replica_batch_size(global_batch_size)
  num_shards, shard_index = _shard(input_context)
  crop_samples = int(round(crop_seconds * frontend.sample_rate))
  autotune = tf.data.AUTOTUNE
  stream = seed * 1000003 + shard_index

  native_only = data_service_address is not None
  if cache:
    ds = decoded_clips(source, frontend.sample_rate, num_shards, shard_index, seed=stream,
                       shuffle=False, deterministic=True, native_only=native_only)
    ds = ds.cache(cache if isinstance(cache, str) else "")
    ds = ds.shuffle(max(1, len(source) // num_shards), seed=stream,
                    reshuffle_each_iteration=True).repeat()
  else:
    ds = decoded_clips(source, frontend.sample_rate, num_shards, shard_index, seed=stream,
                       shuffle=True, deterministic=deterministic,
                       native_only=native_only).repeat()
  ds = ds.enumerate()

  def crop(index, waveform):
    return augment.random_crop_pair(frontend.normalize_clip(waveform), crop_samples,
                                    tf.stack([stream, index]), short_clips)

  ds = ds.map(crop, num_parallel_calls=autotune, deterministic=deterministic)
  if not cache and pair_shuffle_buffer > 1:
    ds = ds.shuffle(pair_shuffle_buffer, seed=stream + 1)
  ds = ds.batch(batch, drop_remainder=True).enumerate()

  def features(index, pairs):  # pairs: [b, 2, samples]
    noise = None
    if positive_noise_stddev > 0:
      noise = positive_noise_stddev * tf.random.stateless_normal(
          tf.shape(pairs[:, 1]), seed=tf.stack([stream + 3, index]))
    anchor, positive = augment.augment_pair(frontend(pairs[:, 0]), frontend(pairs[:, 1], noise),
                                            tf.stack([stream + 2, index]), spec_augment)
    return {"anchor": anchor, "positive": positive}

  ds = ds.map(features, num_parallel_calls=autotune, deterministic=deterministic)
  if data_service_address:
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.OFF,
        service=data_service_address, job_name=f"{data_service_job}-{shard_index}"))
  options = tf.data.Options()
  options.deterministic = deterministic
  return ds.with_options(options).prefetch(autotune)
