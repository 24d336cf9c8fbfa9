"""The COLA training loop (`train()`), driven by gin; `cola_tf.train` is its command line.

`train()` wires TF Model Garden's orbit: `ColaTrainer` (an `orbit.StandardTrainer`) holds
the one train step, and an `orbit.Controller` runs the outer loop of `steps_per_loop` steps
(ending on checkpoint boundaries) and writes TensorBoard summaries. After each loop its
actions stop on a NaN/Inf loss (before anything is saved), print the progress line, and
save checkpoints (every `checkpoint_every` steps, at the end, and on SIGTERM/SIGINT, which
then stops the run). The
operative gin config is written to model_dir and parsed first when a run resumes there, so
`python -m cola_tf.train --model_dir DIR` continues a run as configured.
"""
import contextlib
import os

import orbit
from absl import logging as absl_logging

# Model Garden registers its configs on import; it must come before gin parses any file.
import official.modeling.optimization  # noqa: F401  pylint: disable=unused-import
import gin
import tensorflow as tf
import tf_keras

from cola_tf.runtime import actions as actions_lib
from cola_tf.runtime import checkpoints
from cola_tf.runtime import configuration
from cola_tf.runtime import distribute
from cola_tf import logs
from cola_tf import encoders
from cola_tf.probe import online as evaluation_lib
from cola_tf import frontend as frontend_lib
from cola_tf import model as model_lib
from cola_tf.runtime import optimization
from cola_tf.runtime import preemption
from cola_tf.runtime import trainer as trainer_lib
from cola_tf.runtime import workdir_lock
from cola_tf.data import audio as audio_lib
from cola_tf.data import pipeline
from cola_tf.data import sources
from cola_tf.data import synthetic  # noqa: F401  pylint: disable=unused-import

PRECISIONS = (None, "float32", "mixed_bfloat16")
# orbit's Controller prints each loop's raw outputs to stdout as well as to the INFO log; our
# progress line says more, so its messages go to the INFO log only (`-v 0` shows them).
orbit.controller._log = absl_logging.info  # pylint: disable=protected-access


log = logs.logger("cola_tf")


def _has_batch_norm(model):
  for layer in model.layers:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      return True
    if isinstance(layer, tf_keras.Model) and _has_batch_norm(layer):
      return True
  return False


def _check_counts(**counts):
  """ValueError naming the binding for a setting that is not a positive number (None: unset
  is allowed where the name says so)."""
  for name, (value, optional) in counts.items():
    if value is None and optional:
      continue
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (
        name != "train.crop_seconds" and name != "train.epochs" and value != int(value)):
      kind = "a number" if name in ("train.crop_seconds", "train.epochs") else "an integer"
      raise ValueError(f"{name} must be {kind} > 0{' or None' if optional else ''}, got "
                       f"{value!r}")


def _check_tpu_node_source(strategy, tpu_address, source):
  """A TPU node (a remote TPU: its address is not 'local') runs the input pipeline on the
  TPU's own host, where a Python op cannot run: refuse other sources before connecting."""
  remote = strategy == "tpu" and tpu_address not in (None, "", "local")
  if remote and isinstance(source, sources.Source) and not source.python_free():
    raise ValueError(
        f"train.source: {source.describe()} decodes through Python, which a TPU node "
        f"(train.tpu_address = {tpu_address!r}) cannot run on its host; write pcm16 TFRecords "
        "(python -m cola_tf.data.make_tfrecords ... --format pcm16) and read them with "
        "train.source = @TFRecordSource(), or train on a TPU VM (--tpu local)")


def _check_settings(precision, negatives, global_batch_size, replicas, jit_compile):
  if precision not in PRECISIONS:
    raise ValueError(f"train.precision must be one of {PRECISIONS}, got {precision!r}")
  if negatives not in model_lib.NEGATIVES:
    raise ValueError(f"train.negatives must be one of {model_lib.NEGATIVES}, got {negatives!r}")
  if replicas is None:
    return
  if global_batch_size % replicas:
    raise ValueError(f"train.global_batch_size={global_batch_size} is not divisible by the "
                     f"{replicas} replicas")
  if jit_compile and replicas > 1:
    raise ValueError(f"train.jit_compile = True with {replicas} replicas is not supported: the "
                     "compiled step's apply_gradients would touch every replica's variables; "
                     "leave it off (TPUs compile the step regardless)")


def _budget(source, global_batch_size, epochs, total_steps, steps_per_epoch):
  """(steps_per_epoch, total_steps), after checking the corpus against the batch."""
  if not isinstance(source, sources.Source):
    raise ValueError(f"train.source must be a registered source ({', '.join(sources.SOURCES)}),"
                     f" got {type(source).__name__}")
  audio_lib.BAD_FILES.reset()
  pipeline.check_usable(source, frontend_lib.LogMelFrontend().sample_rate, log)
  if global_batch_size > len(source):
    raise ValueError(f"train.global_batch_size={global_batch_size} is larger than the corpus "
                     f"({len(source)} clips): batches would hold a clip twice, and its crops "
                     "would be each other's negatives; use a smaller batch or more clips")
  steps_per_epoch = steps_per_epoch or max(1, len(source) // global_batch_size)
  if total_steps is None:
    if epochs is None:
      raise ValueError("set train.total_steps or train.epochs")
    total_steps = int(round(epochs * steps_per_epoch))
  return steps_per_epoch, total_steps


def _build(strategy, input_shape, total_steps, steps_per_epoch, global_batch_size):
  """(model, optimizer, schedule, checkpoint), created in the strategy's scope."""
  with strategy.scope():
    model = model_lib.ColaModel(encoder=encoders.build_encoder(input_shape=input_shape))
    model.build_for(input_shape)
    optimizer, schedule = optimization.build_adamw(
        total_steps, steps_per_epoch, global_batch_size=global_batch_size)
    # Create the Adam slots now (not lazily inside the first step) so a restore fills them
    # at once and their names do not depend on where the first step was traced.
    optimizer._create_all_weights(model.trainable_variables)  # pylint: disable=protected-access
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  return model, optimizer, schedule, checkpoint


def _describe(strategy_name, strategy, global_batch_size, negatives, source, steps_per_epoch,
              input_shape, model, precision):
  replicas = strategy.num_replicas_in_sync
  per_anchor = (global_batch_size if negatives == "global" else global_batch_size // replicas)
  log(f"strategy {strategy_name}: {replicas} replica(s), global batch {global_batch_size} "
      f"({global_batch_size // replicas} per replica), {per_anchor - 1} negatives/anchor")
  log(f"data: {source.describe()}; "
      f"{steps_per_epoch} steps/epoch; input {input_shape[0]}x{input_shape[1]} log-mel")
  log(f"model: {model.encoder.name} ({model.count_params():,} parameters), "
      f"{model.similarity} similarity, precision {precision or 'float32'}")
  if negatives == "global" and replicas > 1 and _has_batch_norm(model.encoder):
    log(f"WARNING: global negatives with {model.encoder.name}'s BatchNorm: each replica "
        "normalises with its own batch statistics, which can tell a replica's positives "
        "apart from the gathered ones (SimCLR's reason for synchronised BatchNorm); a "
        "LayerNorm encoder (ConvNeXt) or train.negatives = 'replica' avoids it")
  return per_anchor


def _enter_guards(guards, chief, model_dir, out_dir, wait_for_lock=True):
  """(lock, signals): the chief locks model_dir (waiting for another host's live lock when
  `wait_for_lock`) and removes partial saves; other workers start from an empty scratch
  folder (a crash's leftovers are never restored)."""
  lock = None
  tf.io.gfile.makedirs(model_dir)
  if chief:
    lock = guards.enter_context(workdir_lock.ModelDirLock(model_dir, log, wait=wait_for_lock))
    checkpoints.remove_partial_checkpoints(out_dir)
  elif tf.io.gfile.exists(out_dir):
    tf.io.gfile.rmtree(out_dir)
  tf.io.gfile.makedirs(out_dir)
  return lock, guards.enter_context(preemption.StopOnSignal(log))


def _controller(trainer, strategy, step_counter, manager, summary_dir, actions, steps_per_loop,
                boundaries):
  # Loops end on checkpoint (and evaluation) boundaries, so checkpoints land exactly every
  # checkpoint_every steps and evaluations every OnlineEvaluation.every.
  def loop_length(step):
    return int(min([steps_per_loop] + [every - step % every for every in boundaries]))

  return orbit.Controller(trainer=trainer, strategy=strategy, global_step=step_counter,
                          steps_per_loop=loop_length, checkpoint_manager=manager,
                          summary_dir=summary_dir, train_actions=actions)


def _start_evaluation(evaluation, strategy, model, frontend, crop_seconds, model_dir, chief,
                      start_step):
  """Prepares the online evaluation (if any) and scores the encoder before a fresh run's
  first step (every worker decides alike: the embedding is collective)."""
  if evaluation is None:
    return
  evaluation.prepare(strategy, model.encoder, frontend,
                     int(round(crop_seconds * frontend.sample_rate)), model_dir, chief)
  if chief:
    evaluation.resume_at(start_step)
  if start_step == 0:
    evaluation(0)


def _actions(step_counter, manager, progress, evaluation, total_steps, checkpoint_every,
             signals, lock, strategy):
  """The controller's actions, in order: NaN stop, evaluation, progress line, checkpoints."""
  actions = [actions_lib.StopOnNonFiniteLoss(step_counter, manager)]
  if evaluation is not None:
    actions.append(evaluation_lib.EvaluateEvery(evaluation, step_counter, total_steps,
                                                progress))
  return actions + [progress, actions_lib.SaveCheckpoints(manager, step_counter, checkpoint_every,
                                              total_steps, signals,
                                              lock.heartbeat if lock else None, strategy)]


@gin.configurable(denylist=["model_dir"])
def train(model_dir, source=gin.REQUIRED, strategy="default", tpu_address=None, devices=None,
          cpu_replicas=None, global_batch_size=64, epochs=None, total_steps=None,
          steps_per_epoch=None, steps_per_loop=10, checkpoint_every=100, keep_checkpoints=3,
          crop_seconds=0.96, negatives="replica", precision=None, jit_compile=False, seed=0,
          evaluation=None, wait_for_lock=True):
  """Pretrains COLA into `model_dir`.

  Returns a dict: final 'step', 'start_step' (> 0 when resumed), final 'loss' and 'accuracy'
  (None when there was nothing to train), 'history' [(step, loss, accuracy)] per loop, the
  'strategy', 'model', 'optimizer' and last 'checkpoint'.

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
    evaluation: an `evaluation.OnlineEvaluation` (kNN and linear-probe scores every N steps),
      or None.
    wait_for_lock: wait for another host's live lock on model_dir to go stale (False: fail
      at once; see workdir_lock).
  """
  _check_counts(**{f"train.{k}": (v, k in ("total_steps", "epochs")) for k, v in dict(
      global_batch_size=global_batch_size, total_steps=total_steps, epochs=epochs,
      steps_per_loop=steps_per_loop, checkpoint_every=checkpoint_every,
      keep_checkpoints=keep_checkpoints, crop_seconds=crop_seconds).items()})
  _check_settings(precision, negatives, global_batch_size, None, jit_compile)
  _check_tpu_node_source(strategy, tpu_address, source)
  name, strategy = strategy, distribute.build_strategy(strategy, tpu_address, devices,
                                                        cpu_replicas)
  _check_settings(precision, negatives, global_batch_size, strategy.num_replicas_in_sync,
                  jit_compile)
  tf_keras.utils.set_random_seed(seed)
  tf_keras.mixed_precision.set_global_policy(precision or "float32")
  chief, out_dir = distribute.is_chief(strategy), distribute.write_dir(model_dir, strategy)
  steps_per_epoch, total_steps = _budget(source, global_batch_size, epochs, total_steps,
                                         steps_per_epoch)
  frontend = frontend_lib.LogMelFrontend()
  input_shape = configuration.model_input_shape(frontend, crop_seconds)
  model, optimizer, schedule, checkpoint = _build(strategy, input_shape, total_steps,
                                                  steps_per_epoch, global_batch_size)
  step_counter = optimizer.iterations
  with contextlib.ExitStack() as guards:
    lock, signals = _enter_guards(guards, chief, model_dir, out_dir, wait_for_lock)
    restored = checkpoints.restore(checkpoint, model_dir, chief, model.encoder.name)
    start_step = int(step_counter.numpy())
    result = {"step": start_step, "start_step": start_step, "chief": chief, "loss": None,
              "accuracy": None, "history": [], "strategy": strategy, "model": model,
              "optimizer": optimizer, "checkpoint": restored}
    per_anchor = _describe(name, strategy, global_batch_size, negatives, source,
                           steps_per_epoch, input_shape, model, precision)
    log(f"resumed from {restored} at step {start_step}" if restored
        else f"starting from scratch in {model_dir}")
    if start_step >= total_steps:
      log(f"already at step {start_step} (train.total_steps = {total_steps}): nothing to "
          "train; raise train.total_steps or train.epochs to continue this run")
      return result
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.pair_dataset(source, ctx, global_batch_size, frontend,
                                          seed=seed + start_step, crop_seconds=crop_seconds))
    trainer = trainer_lib.ColaTrainer(strategy, model, optimizer, dataset, negatives, global_batch_size,
                          jit_compile)
    if chief:
      configuration.save_operative_config(model_dir)
    manager = tf.train.CheckpointManager(checkpoint, out_dir, max_to_keep=keep_checkpoints,
                                         step_counter=step_counter)
    signals.saved = lambda: manager.latest_checkpoint or "none yet"
    progress = actions_lib.ProgressLine(step_counter, total_steps, global_batch_size, schedule)
    _start_evaluation(evaluation, strategy, model, frontend, crop_seconds, model_dir, chief,
                      start_step)
    actions = _actions(step_counter, manager, progress, evaluation, total_steps,
                       checkpoint_every, signals, lock, strategy)
    controller = _controller(
        trainer, strategy, step_counter, manager,
        os.path.join(model_dir, "train") if chief else None, actions,
        steps_per_loop, [checkpoint_every] + ([evaluation.every] if evaluation else []))
    progress.start()
    _run_loop(controller, total_steps, actions[-1])
  if not chief and tf.io.gfile.exists(out_dir):
    tf.io.gfile.rmtree(out_dir)
  return _finish(result, progress, manager, evaluation, per_anchor, model_dir)


def configured_source(gin_files, gin_params):
  """The source `train()` would read with these configs (`train.source`), built (for
  make_tfrecords: parsing them needs every configurable `train` names registered, as here)."""
  gin.clear_config()
  configuration.parse_gin(gin_files, gin_params)
  try:
    reference = gin.query_parameter("train.source")
  except ValueError:
    raise ValueError(f"no train.source in {', '.join(gin_files)}: bind one, e.g. --gin_param "
                     "\"train.source = @FolderSource()\"") from None
  if not isinstance(reference, gin.config.ConfigurableReference):
    raise ValueError(f"train.source must name a source (train.source = @FolderSource()), got "
                     f"{reference!r}")
  return reference.scoped_configurable_fn()


def _run_loop(controller, total_steps, saver):
  """controller.train, writing the summaries of a loop that ended in a stop on a signal
  (the stopping action raises before the controller writes them) and flushing the writer
  on every way out (a stop, a NaN, an error), since the command line exits with os._exit."""
  try:
    controller.train(steps=total_steps)
  except preemption.StopRequested:
    if saver.last_output:
      controller.summary_manager.write_summaries(saver.last_output)
    raise
  finally:
    controller.summary_manager.flush()


def _finish(result, progress, manager, evaluation, per_anchor, model_dir):
  """The closing lines; `result` completed with the last loop's numbers."""
  step, loss, accuracy = progress.history[-1]
  log(f"data: {audio_lib.BAD_FILES.summary()}")
  log(f"done at step {step}: loss {loss:.4f}, contrastive accuracy {accuracy:.3f} "
      f"(chance {1 / per_anchor:.3f}); checkpoints in {model_dir}")
  if evaluation is not None:
    result["eval_seconds"] = evaluation.seconds
    log(f"online evaluation took {evaluation.seconds:.1f} s in all; scores in "
        f"{os.path.join(model_dir, evaluation_lib.EVAL_CSV)}")
  result.update(step=step, loss=loss, accuracy=accuracy, history=progress.history,
                checkpoint=manager.latest_checkpoint)
  return result
