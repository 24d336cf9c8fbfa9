"""The orbit Controller's actions after each loop: stop on a non-finite loss (before anything
is saved), the progress line, and checkpoints (every N steps, at the end, and on
SIGTERM/SIGINT, agreed between the workers of a multi-worker job)."""
import signal
import time

import numpy as np
import tensorflow as tf

from cola_tf import logs
from cola_tf.runtime import distribute
from cola_tf.runtime import preemption

log = logs.logger("cola_tf")


class NonFiniteLossError(RuntimeError):
  """Raised when the loss becomes NaN/Inf; the last good checkpoint is left untouched."""


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
    self._agree = any_worker_fn(strategy) if distribute.is_multi_worker(strategy) else None
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


def any_worker_fn(strategy):
  """f(this worker's flag) -> whether any worker's flag is set (one small all-reduce)."""
  @tf.function
  def count(flag):
    per_replica = strategy.run(lambda: tf.identity(flag))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  return lambda flag: float(count(tf.constant(1.0 if flag else 0.0))) > 0
