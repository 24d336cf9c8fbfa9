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
import signal
import time

import orbit
from absl import logging as absl_logging

# Model Garden registers its configs on import; it must come before gin parses any file.
import official.modeling.optimization  # noqa: F401  pylint: disable=unused-import
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from cola_tf import configuration
from cola_tf import distribute
from cola_tf import logs
from cola_tf import encoders
from cola_tf import evaluation as evaluation_lib
from cola_tf import frontend as frontend_lib
from cola_tf import model as model_lib
from cola_tf import optimization
from cola_tf import preemption
from cola_tf import workdir_lock
from cola_tf.data import audio as audio_lib
from cola_tf.data import pipeline
from cola_tf.data import sources
from cola_tf.data import synthetic  # noqa: F401  pylint: disable=unused-import

PRECISIONS = (None, "float32", "mixed_bfloat16")
# orbit's Controller prints each loop's raw outputs to stdout as well as to the INFO log; our
# progress line says more, so its messages go to the INFO log only (`-v 0` shows them).
orbit.controller._log = absl_logging.info  # pylint: disable=protected-access


class NonFiniteLossError(RuntimeError):
  """Raised when the loss becomes NaN/Inf; the last good checkpoint is left untouched."""


log = logs.logger("cola_tf")


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


class ColaTrainer(orbit.StandardTrainer):
  """The one COLA train step, run `num_steps` times per call of `train(num_steps)`.

  A step embeds [anchors; positives] in one batch (shared BatchNorm statistics, as both
  references), scores them (replica or global negatives), sums the gradients over replicas,
  clips them by the global norm if the optimizer asks for it, and applies AdamW.
  `train()` returns {'loss', 'contrastive_accuracy'} averaged over the call's steps.
  """

  def __init__(self, strategy, model, optimizer, dataset, negatives="replica",
               global_batch_size=64, jit_compile=False):
    self.strategy = strategy
    self.model = model
    self.optimizer = optimizer
    with self.strategy.scope():
      self.loss = tf_keras.metrics.Mean("loss")
      self.accuracy = tf_keras.metrics.Mean("contrastive_accuracy")
    self._step = self._make_step(negatives, global_batch_size)
    if jit_compile:
      self._step = tf.function(self._step, jit_compile=True)
    super().__init__(dataset, options=orbit.StandardTrainerOptions(use_tf_while_loop=True))

  def _make_step(self, negatives, global_batch_size):
    model, optimizer = self.model, self.optimizer
    clip_norm = float(getattr(optimizer, "gradient_clip_norm", 0.0))

    def step(batch):
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
      self.loss.update_state(per_example)
      self.accuracy.update_state(model_lib.contrastive_accuracy(logits, labels))

    return step

  def train_loop_begin(self):
    self.loss.reset_state()
    self.accuracy.reset_state()

  def train_step(self, iterator):
    self.strategy.run(self._step, args=(next(iterator),))

  def train_loop_end(self):
    return {"loss": self.loss.result(), "contrastive_accuracy": self.accuracy.result()}


class StopOnNonFiniteLoss:
  """Controller action, first in line: a NaN/Inf loss raises before the controller saves."""

  def __init__(self, step_counter, manager):
    self.step_counter, self.manager = step_counter, manager
    self.last_step = int(step_counter.numpy())

  def __call__(self, output):
    step = int(self.step_counter.numpy())
    loss = float(output["loss"])
    if not np.isfinite(loss):
      raise NonFiniteLossError(
          f"loss became {loss} between steps {self.last_step} and {step}; stopping. The last "
          f"good checkpoint ({self.manager.latest_checkpoint or 'none'}) is kept in "
          f"{self.manager.directory}")
    self.last_step = step


class ProgressLine:
  """Controller action: the progress line, and learning rate and clips/s added to the
  summaries; keeps the (step, loss, accuracy) history."""

  def __init__(self, step_counter, total_steps, global_batch_size, schedule):
    self.step_counter, self.total_steps = step_counter, total_steps
    self.global_batch_size, self.schedule = global_batch_size, schedule
    self.history, self._rate, self._last = [], None, None
    self.note = ""  # the online evaluation's scores, when it has just run

  def start(self):
    self._last = (int(self.step_counter.numpy()), time.time())

  def __call__(self, output):
    step, now = int(self.step_counter.numpy()), time.time()
    rate = (step - self._last[0]) * self.global_batch_size / max(now - self._last[1], 1e-9)
    self._last = (step, now)
    self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
    loss, accuracy = float(output["loss"]), float(output["contrastive_accuracy"])
    lr = float(self.schedule(step))
    output.update(learning_rate=lr, clips_per_second=rate)  # the controller writes them too
    self.history.append((step, loss, accuracy))
    eta = (self.total_steps - step) * self.global_batch_size / self._rate
    log(f"step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%) | loss "
        f"{loss:.4f} | acc {accuracy:.3f} | lr {lr:.2e} | {rate:.1f} clips/s | ETA "
        f"{logs.format_seconds(eta)}{self.note}")
    self.note = ""


class SaveCheckpoints:
  """Controller action, last in line: saves every `every` steps, at `total_steps`, and after
  SIGTERM/SIGINT at the step reached, then stops (`preemption.StopRequested`). It refreshes
  the model_dir lock too. (The controller's own interval saving counts from the first loop,
  not from step 0, so it is not used.)"""

  def __init__(self, manager, step_counter, every, total_steps, signals, heartbeat=None,
               strategy=None):
    self.manager, self.step_counter, self.every = manager, step_counter, every
    self.total_steps, self.signals, self.heartbeat = total_steps, signals, heartbeat
    self._agree = _any_worker_fn(strategy) if distribute.is_multi_worker(strategy) else None
    self.last_output = None

  def __call__(self, output):
    step = int(self.step_counter.numpy())
    received = self.signals.received
    if self._agree is not None:  # saving is collective: stop on every worker or on none
      anyone = self._agree(bool(received))  # every worker calls it, flagged or not
      received = received or (int(signal.SIGTERM) if anyone else None)
    if step % self.every == 0 or step >= self.total_steps or received:
      self.manager.save(checkpoint_number=step)
    if self.heartbeat is not None:
      self.heartbeat()
    if received:
      self.last_output = dict(output)  # for the summaries the controller will not write
      raise preemption.StopRequested(received, step, self.manager.latest_checkpoint)


def _any_worker_fn(strategy):
  """f(this worker's flag) -> whether any worker's flag is set (one small all-reduce)."""
  @tf.function
  def count(flag):
    per_replica = strategy.run(lambda: tf.identity(flag))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  return lambda flag: float(count(tf.constant(1.0 if flag else 0.0))) > 0


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
    _remove_partial_checkpoints(out_dir)
  elif tf.io.gfile.exists(out_dir):
    tf.io.gfile.rmtree(out_dir)
  tf.io.gfile.makedirs(out_dir)
  return lock, guards.enter_context(preemption.StopOnSignal(log))


def _restore(checkpoint, model_dir, chief=True):
  """Every worker restores the chief's newest checkpoint that reads (the other workers' own
  folders are scratch space, deleted at the end of each run). One that does not read (a
  truncated or corrupt file) is named on one line and, by the chief, moved aside (never
  deleted) and dropped from the `checkpoint` list; the one before it is tried. Returns the
  restored path or None."""
  state = tf.train.get_checkpoint_state(model_dir)
  candidates = list(reversed(state.all_model_checkpoint_paths)) if state else []
  for newer, path in enumerate(candidates):
    path = path if os.path.isabs(path) or "://" in path else os.path.join(model_dir, path)
    try:
      checkpoint.restore(path).assert_existing_objects_matched()
      if newer and chief:
        _drop_newer_checkpoints(model_dir, state, path)
      return path
    except (tf.errors.OpError, IndexError, OSError) as e:  # unreadable, not a model mismatch
      reason = " ".join(str(getattr(e, "message", e)).split())[:200]
      moved = _move_aside(path) if chief else "left in place (the chief moves it)"
      log(f"checkpoint {path} does not restore ({type(e).__name__}: {reason}); {moved}; "
          "trying the one before")
  return None


def _move_aside(path):
  """Renames every file of checkpoint `path` to NAME.unreadable-TIME; returns a line."""
  suffix = f".unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
  for name in tf.io.gfile.glob(path + ".*"):
    tf.io.gfile.rename(name, name + suffix)
  return f"its files moved aside to {os.path.basename(path)}.*{suffix}"


def _drop_newer_checkpoints(model_dir, state, restored):
  """The `checkpoint` list without the unreadable ones after `restored` (they were moved)."""
  paths = list(state.all_model_checkpoint_paths)
  keep = paths[:[os.path.basename(p) for p in paths].index(os.path.basename(restored)) + 1]
  tf.compat.v1.train.update_checkpoint_state(model_dir, restored,
                                             all_model_checkpoint_paths=keep)


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
  actions = [StopOnNonFiniteLoss(step_counter, manager)]
  if evaluation is not None:
    actions.append(evaluation_lib.EvaluateEvery(evaluation, step_counter, total_steps,
                                                progress))
  return actions + [progress, SaveCheckpoints(manager, step_counter, checkpoint_every,
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
    restored = _restore(checkpoint, model_dir, chief)
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
    trainer = ColaTrainer(strategy, model, optimizer, dataset, negatives, global_batch_size,
                          jit_compile)
    if chief:
      configuration.save_operative_config(model_dir)
    manager = tf.train.CheckpointManager(checkpoint, out_dir, max_to_keep=keep_checkpoints,
                                         step_counter=step_counter)
    signals.saved = lambda: manager.latest_checkpoint or "none yet"
    progress = ProgressLine(step_counter, total_steps, global_batch_size, schedule)
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
