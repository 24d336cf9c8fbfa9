"""The COLA input pipeline: files -> waveform -> two random crops -> log-mel -> SpecAugment.

Everything random is stateless and seeded from `seed`, so the pipeline is reproducible up to
the order in which parallel reads finish (`deterministic=True` removes that too).
"""
import gin
import tensorflow as tf

from cola_tf import augment
from cola_tf.data import audio


@gin.configurable(denylist=["files", "input_context", "global_batch_size", "frontend", "seed"])
def pair_dataset(files, input_context, global_batch_size, frontend, seed=0,
                 crop_seconds=0.96, spec_augment="positive", cache=False,
                 shuffle_files=True, deterministic=False):
  """Batches of {'anchor', 'positive'}: [per_replica_batch, frames, mels] float32, forever.

  Files are sharded per input pipeline (one per host under multi-worker / TPU pods), so
  each host reads only its own files. `cache=True` keeps decoded clips in memory (small
  corpora only).
  """
  if spec_augment not in augment.SPEC_AUGMENT_MODES:
    raise ValueError(f"pair_dataset.spec_augment must be one of {augment.SPEC_AUGMENT_MODES}, "
                     f"got {spec_augment!r}")
  batch = global_batch_size
  pipelines, pipeline_id = 1, 0
  if input_context is not None:
    batch = input_context.get_per_replica_batch_size(global_batch_size)
    pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
  if len(files) < pipelines:
    raise ValueError(f"{len(files)} files cannot be sharded over {pipelines} input pipelines")
  crop_samples = int(round(crop_seconds * frontend.sample_rate))
  autotune = tf.data.AUTOTUNE

  ds = tf.data.Dataset.from_tensor_slices(list(files))
  if pipelines > 1:
    ds = ds.shard(pipelines, pipeline_id)
  ds = ds.map(lambda path: audio.load_wav(path, frontend.sample_rate),
              num_parallel_calls=autotune, deterministic=deterministic)
  if cache:
    ds = ds.cache()
  if shuffle_files:
    ds = ds.shuffle(max(1, len(files) // pipelines), seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().enumerate()
  crop_seed = tf.constant([seed, pipeline_id], tf.int64)

  def crop(index, waveform):
    return augment.random_crop_pair(
        waveform, crop_samples, tf.stack([crop_seed[0] * 1000003 + crop_seed[1], index]))

  ds = ds.map(crop, num_parallel_calls=autotune, deterministic=deterministic)
  ds = ds.batch(batch, drop_remainder=True).enumerate()

  def features(index, pairs):
    log_mel = frontend(pairs)  # [b, 2, frames, mels]
    anchor, positive = augment.augment_pair(
        log_mel[:, 0], log_mel[:, 1],
        tf.stack([crop_seed[0] * 1000003 + crop_seed[1] + 1, index]), spec_augment)
    return {"anchor": anchor, "positive": positive}

  ds = ds.map(features, num_parallel_calls=autotune, deterministic=deterministic)
  options = tf.data.Options()
  options.deterministic = deterministic
  return ds.with_options(options).prefetch(autotune)
