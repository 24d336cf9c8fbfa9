"""Checkpoints on resume: partial saves removed, the newest readable checkpoint restored (an
unreadable one named, moved aside, never deleted)."""
import logging
import os
import time

import tensorflow as tf

from cola_tf import logs
from cola_tf.runtime import configuration

log = logs.logger("cola_tf")


def remove_partial_checkpoints(directory):
  """Removes `ckpt-N_temp*` left by a save that a kill interrupted."""
  for path in tf.io.gfile.glob(os.path.join(directory, "ckpt-*_temp*")):
    log(f"removing a partial checkpoint left by an interrupted save: {path}")
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    else:
      tf.io.gfile.remove(path)


def restore(checkpoint, model_dir, chief=True, encoder_name=None):
  """Every worker restores the chief's newest checkpoint that reads (the other workers' own
  folders are scratch space, deleted at the end of each run). One that does not read (a
  truncated or corrupt file) is named on one line and, by the chief, moved aside (never
  deleted) and dropped from the `checkpoint` list; the one before it is tried. Returns the
  restored path or None. With `encoder_name`, checkpoints of another encoder are refused
  first, naming both (`configuration.check_resumable_encoder`)."""
  if encoder_name:
    configuration.check_resumable_encoder(model_dir, encoder_name)
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
  # The one call that edits the list; its deprecation notice (8 lines) says nothing to a user.
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    tf.compat.v1.train.update_checkpoint_state(model_dir, restored,
                                               all_model_checkpoint_paths=keep)
  finally:
    logger.setLevel(level)
