"""The COLA training loop (`train()`), driven by gin; `cola_tf.train` is its command line.

`train()` builds the strategy, the input pipeline, the model and
AdamW (warmup + cosine), restores the latest checkpoint in model_dir if there is one, and
runs a custom loop on tf.distribute: `steps_per_loop` steps per tf.function call, then
metrics, TensorBoard summaries, a progress line and (every `checkpoint_every` steps) a
checkpoint. The operative gin config is written to model_dir and parsed first when a run
resumes there, so `python -m cola_tf.train --model_dir DIR` continues a run as configured.
"""
import contextlib
import os
import time

# Model Garden registers its configs on import; it must come before gin parses any file.
import official.modeling.optimization  # noqa: F401  pylint: disable=unused-import
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from cola_tf import configuration
from cola_tf import distribute
from cola_tf import encoders
from cola_tf import frontend as frontend_lib
from cola_tf import model as model_lib
from cola_tf import optimization
from cola_tf import preemption
from cola_tf import workdir_lock
from cola_tf.data import audio as audio_lib
from cola_tf.data import pipeline
from cola_tf.data import sources  # noqa: F401  pylint: disable=unused-import
from cola_tf.data import synthetic  # noqa: F401  pylint: disable=unused-import

PRECISIONS = (None, "float32", "mixed_bfloat16")


class NonFiniteLossError(RuntimeError):
  """Raised when the loss becomes NaN/Inf; the last good checkpoint is left untouched."""


def log(message):
  print(f"[cola_tf] {message}", flush=True)


def _format_seconds(seconds):
  seconds = int(max(0, seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def atomic_write(path, text):
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def aggregated_gradients(gradients, clip_norm):
  """Sums per-replica gradients over all replicas, then clips by the global norm: the
  clipping sees the whole batch's gradient (Model Garden's AdamW clips each replica's part
  before its own all-reduce)."""
  ctx = tf.distribute.get_replica_context()
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    gradients = ctx.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
  if clip_norm > 0:
    gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
  return gradients


def _make_step_fn(model, optimizer, metrics, negatives, global_batch_size):
  loss_metric, accuracy_metric = metrics
  clip_norm = float(getattr(optimizer, "gradient_clip_norm", 0.0))

  def step_fn(batch):
    anchors, positives = batch["anchor"], batch["positive"]
    local = tf.shape(anchors)[0]
    with tf.GradientTape() as tape:
      embeddings = model.embed(tf.concat([anchors, positives], axis=0), training=True)
      logits, labels = model_lib.replica_logits_and_labels(
          model, embeddings[:local], embeddings[local:], negatives)
      per_example = model_lib.contrastive_loss(logits, labels)
      loss = tf.reduce_sum(per_example) / global_batch_size
    variables = model.trainable_variables
    gradients = aggregated_gradients(tape.gradient(loss, variables), clip_norm)
    optimizer.apply_gradients(zip(gradients, variables),
                              experimental_aggregate_gradients=False)
    loss_metric.update_state(per_example)
    accuracy_metric.update_state(model_lib.contrastive_accuracy(logits, labels))

  return step_fn


def _report(writer, step, total_steps, loss, accuracy, lr, rate, eta):
  """TensorBoard scalars and the progress line of one loop."""
  with writer.as_default(step=step):
    tf.summary.scalar("loss", loss)
    tf.summary.scalar("contrastive_accuracy", accuracy)
    tf.summary.scalar("learning_rate", lr)
    tf.summary.scalar("clips_per_second", rate)
  log(f"step {step}/{total_steps} ({100 * step / total_steps:.0f}%) | loss {loss:.4f} | "
      f"acc {accuracy:.3f} | lr {lr:.2e} | {rate:.1f} clips/s | ETA {_format_seconds(eta)}")


def _has_batch_norm(model):
  for layer in model.layers:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      return True
    if isinstance(layer, tf_keras.Model) and _has_batch_norm(layer):
      return True
  return False


def _remove_partial_checkpoints(directory):
  """Removes `ckpt-N_temp*` left by a save that a kill interrupted."""
  for path in tf.io.gfile.glob(os.path.join(directory, "ckpt-*_temp*")):
    log(f"removing a partial checkpoint left by an interrupted save: {path}")
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    else:
      tf.io.gfile.remove(path)


@gin.configurable(denylist=["model_dir"])
def train(model_dir, source=gin.REQUIRED, strategy="default", tpu_address=None, devices=None,
          cpu_replicas=None, global_batch_size=64, epochs=None, total_steps=None,
          steps_per_epoch=None, steps_per_loop=10, checkpoint_every=100, keep_checkpoints=3,
          crop_seconds=0.96, negatives="replica", precision=None, jit_compile=False, seed=0):
  """Pretrains COLA into `model_dir`.

  Returns a dict: final 'step', 'start_step' (> 0 when resumed), final 'loss' and 'accuracy'
  (None when there was nothing to train), the 'strategy',
  'history' [(step, loss, accuracy)] per loop, the 'model', 'optimizer' and last 'checkpoint'.

  Args:
    source: where clips come from (e.g. `@SyntheticSource()`, `@FolderSource()`).
    strategy: 'default' | 'mirrored' | 'multi_worker_mirrored' | 'tpu' (see distribute.py).
    cpu_replicas: with 'mirrored' on a CPU-only host, split the CPU into this many replicas
      (set before TensorFlow starts, so from the command line only).
    global_batch_size: pairs per step over all replicas (split evenly per replica).
    epochs / total_steps: the step budget; total_steps wins if both are set. Raising it and
      re-running in the same model_dir continues the run (schedule included).
    steps_per_epoch: default len(source) // global_batch_size.
    negatives: 'replica' (b - 1 negatives per anchor) or 'global' (all-gathered positives:
      global_batch_size - 1 negatives).
    precision: None/'float32' or 'mixed_bfloat16' (encoder in bf16; head, similarity, loss and
      optimizer state in float32).
    jit_compile: XLA for the train step (TPU compiles regardless; measured ~5x slower on CPU).
  """
  if precision not in PRECISIONS:
    raise ValueError(f"train.precision must be one of {PRECISIONS}, got {precision!r}")
  if negatives not in model_lib.NEGATIVES:
    raise ValueError(f"train.negatives must be one of {model_lib.NEGATIVES}, got {negatives!r}")
  strategy_name = strategy
  strategy = distribute.build_strategy(strategy, tpu_address=tpu_address, devices=devices,
                                       cpu_replicas=cpu_replicas)
  tf_keras.utils.set_random_seed(seed)
  tf_keras.mixed_precision.set_global_policy(precision or "float32")

  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(f"train.global_batch_size={global_batch_size} is not divisible by the "
                     f"{replicas} replicas")
  if jit_compile and replicas > 1:
    raise ValueError(f"train.jit_compile = True with {replicas} replicas is not supported: the "
                     "compiled step's apply_gradients would touch every replica's variables; "
                     "leave it off (TPUs compile the step regardless)")
  chief = distribute.is_chief(strategy)
  out_dir = distribute.write_dir(model_dir, strategy)
  tf.io.gfile.makedirs(out_dir)

  frontend = frontend_lib.LogMelFrontend()
  audio_lib.BAD_FILES.reset()
  pipeline.check_usable(source, frontend.sample_rate)
  if global_batch_size > len(source):
    raise ValueError(f"train.global_batch_size={global_batch_size} is larger than the corpus "
                     f"({len(source)} clips): batches would hold a clip twice, and its crops "
                     "would be each other's negatives; use a smaller batch or more clips")
  steps_per_epoch = steps_per_epoch or max(1, len(source) // global_batch_size)
  if total_steps is None:
    if epochs is None:
      raise ValueError("set train.total_steps or train.epochs")
    total_steps = int(round(epochs * steps_per_epoch))
  input_shape = configuration.model_input_shape(frontend, crop_seconds)

  with strategy.scope():
    model = model_lib.ColaModel(encoder=encoders.build_encoder(input_shape=input_shape))
    model.build_for(input_shape)
    optimizer, schedule = optimization.build_adamw(
        total_steps, steps_per_epoch, global_batch_size=global_batch_size)
    step_counter = optimizer.iterations
    # Create the Adam slots now (not lazily inside the first step) so a restore fills them
    # at once and their names do not depend on where the first step was traced.
    optimizer._create_all_weights(model.trainable_variables)  # pylint: disable=protected-access
    metrics = (tf_keras.metrics.Mean("loss"), tf_keras.metrics.Mean("contrastive_accuracy"))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  with contextlib.ExitStack() as guards:
    if chief:  # one trainer per model_dir; partial saves of a killed run are removed
      guards.enter_context(workdir_lock.ModelDirLock(model_dir, log))
      _remove_partial_checkpoints(out_dir)
    stop = guards.enter_context(preemption.StopOnSignal(log))
    manager = tf.train.CheckpointManager(checkpoint, out_dir, max_to_keep=keep_checkpoints,
                                         step_counter=step_counter)
    # Every worker restores the chief's latest checkpoint: the other workers' own folders
    # are scratch space, deleted at the end of each run.
    restored = tf.train.latest_checkpoint(model_dir)
    if restored:
      checkpoint.restore(restored).assert_existing_objects_matched()
    start_step = int(step_counter.numpy())

    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.pair_dataset(source, ctx, global_batch_size, frontend,
                                          seed=seed + start_step, crop_seconds=crop_seconds))
    iterator = iter(dataset)
    step_fn = _make_step_fn(model, optimizer, metrics, negatives, global_batch_size)
    if jit_compile:
      step_fn = tf.function(step_fn, jit_compile=True)

    @tf.function
    def train_steps(iterator, num_steps):
      for _ in tf.range(num_steps):
        strategy.run(step_fn, args=(next(iterator),))

    if chief:
      atomic_write(os.path.join(model_dir, configuration.OPERATIVE_CONFIG),
                   gin.operative_config_str())
    negatives_per_anchor = (global_batch_size if negatives == "global"
                            else global_batch_size // replicas) - 1
    log(f"strategy {strategy_name}: {replicas} replica(s), global batch {global_batch_size} "
        f"({global_batch_size // replicas} per replica), {negatives_per_anchor} negatives/anchor")
    log(f"data: {source.describe() if hasattr(source, 'describe') else source}; "
        f"{steps_per_epoch} steps/epoch; input {input_shape[0]}x{input_shape[1]} log-mel")
    log(f"model: {model.encoder.name} ({model.count_params():,} parameters), "
        f"{model.similarity} similarity, precision {precision or 'float32'}")
    if negatives == "global" and replicas > 1 and _has_batch_norm(model.encoder):
      log(f"WARNING: global negatives with {model.encoder.name}'s BatchNorm: each replica "
          "normalises with its own batch statistics, which can tell a replica's positives "
          "apart from the gathered ones (SimCLR's reason for synchronised BatchNorm); a "
          "LayerNorm encoder (ConvNeXt) or train.negatives = 'replica' avoids it")
    log(f"resumed from {restored} at step {start_step}" if restored
        else f"starting from scratch in {model_dir}")
    result = {"step": start_step, "start_step": start_step, "chief": chief, "loss": None,
              "strategy": strategy,
              "accuracy": None, "history": [], "model": model, "optimizer": optimizer,
              "checkpoint": manager.latest_checkpoint}
    if start_step >= total_steps:
      log(f"already at step {start_step} (train.total_steps = {total_steps}): nothing to "
          "train; raise train.total_steps or train.epochs to continue this run")
      return result

    writer = (tf.summary.create_file_writer(os.path.join(model_dir, "train")) if chief
              else tf.summary.create_noop_writer())
    step, loss, accuracy = start_step, float("nan"), float("nan")
    history = []
    recent_rate = None  # smoothed clips/s for the ETA
    while step < total_steps:
      to_checkpoint = checkpoint_every - step % checkpoint_every
      num_steps = min(steps_per_loop, total_steps - step, to_checkpoint)
      started = time.time()
      train_steps(iterator, tf.constant(num_steps))
      new_step = int(step_counter.numpy())
      elapsed = time.time() - started
      loss, accuracy = (float(m.result().numpy()) for m in metrics)
      for m in metrics:
        m.reset_state()
      if not np.isfinite(loss):
        raise NonFiniteLossError(
            f"loss became {loss} between steps {step} and {new_step}; stopping. The last good "
            f"checkpoint ({manager.latest_checkpoint or 'none'}) is kept in {out_dir}")
      step = new_step
      history.append((step, loss, accuracy))
      rate = num_steps * global_batch_size / elapsed
      recent_rate = rate if recent_rate is None else 0.7 * recent_rate + 0.3 * rate
      _report(writer, step, total_steps, loss, accuracy, float(schedule(step)), rate,
              (total_steps - step) * global_batch_size / recent_rate)
      if step % checkpoint_every == 0 or step == total_steps or stop.received:
        manager.save(checkpoint_number=step)
      if stop.received:
        writer.flush()
        raise preemption.StopRequested(stop.received, step, manager.latest_checkpoint)
    writer.flush()
    if not chief and tf.io.gfile.exists(out_dir):
      tf.io.gfile.rmtree(out_dir)
    log(f"data: {audio_lib.BAD_FILES.summary()}")
    log(f"done at step {step}: loss {loss:.4f}, contrastive accuracy {accuracy:.3f} "
        f"(chance {1 / (negatives_per_anchor + 1):.3f}); checkpoints in {model_dir}")
    result.update(step=step, loss=loss, accuracy=accuracy, history=history,
                  checkpoint=manager.latest_checkpoint)
    return result
