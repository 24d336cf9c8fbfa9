r"""COLA pretraining: `python -m cola_tf.train --gin_file tiny [--model_dir DIR]`.

`--gin_file` is a path or a shipped config's name (tiny, convnext_tiny, ...; see
cola_tf.runtime.configuration).

Flags -> gin -> `cola_tf.runtime.training.train()`, then (by default) export of the frozen encoder to
MODEL_DIR/export. The operative gin config saved in MODEL_DIR is parsed first when a run
resumes there, so `python -m cola_tf.train --model_dir DIR` continues a run as configured.

Exit codes: 0 done; 1 a fatal error (one line naming it; `--traceback` for the whole
traceback); 2 a usage or configuration error, or a model_dir another trainer is using;
128 + N stopped by signal N after saving a checkpoint (143 SIGTERM, 130 SIGINT: run the same
command to resume). The process ends at once after the error line, so a broken input
pipeline cannot leave it hanging at interpreter shutdown.
"""
import os
import signal
import sys
import traceback

from cola_tf.runtime import preemption  # first: its signal thread must exist before TensorFlow's

if __name__ == "__main__":  # the command line only: imported, it leaves the caller's signals
  preemption.block_signals()
# Model Garden registers its configs on import; it must come before gin parses any file.
import official.modeling.optimization  # noqa: F401  pylint: disable=unused-import
from absl import app
from absl import flags
from absl import logging as absl_logging

import tensorflow as tf

from cola_tf.runtime import configuration
from cola_tf.runtime import distribute
from cola_tf.export import frozen_encoder
from cola_tf.runtime import training
from cola_tf.runtime import workdir_lock

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order: paths, or "
                          "shipped configs by name (tiny, efficientnet_b0, convnext_tiny, ...).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings applied after the files, "
                          "e.g. \"train.total_steps = 500\".")
flags.DEFINE_string("model_dir", None, "Where checkpoints, summaries and the operative config "
                    "go (local or gs://). Default: runs/<name of the last gin file>.")
flags.DEFINE_string("tpu", None, "TPU name or address: sets train.strategy = 'tpu'.")
flags.DEFINE_bool("export", True, "At the end, export the frozen encoder to MODEL_DIR/export "
                  "(see cola_tf.export).")
flags.DEFINE_bool("traceback", False, "On an error, print the whole traceback too.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # library INFO chatter off unless asked for (-v 0)
    absl_logging.set_verbosity(absl_logging.WARNING)
  model_dir = FLAGS.model_dir
  if model_dir is None:
    if not FLAGS.gin_file:
      raise app.UsageError("pass --gin_file (e.g. tiny) and/or --model_dir")
    model_dir = os.path.join("runs", os.path.splitext(os.path.basename(FLAGS.gin_file[-1]))[0])
  params = list(FLAGS.gin_param)
  if FLAGS.tpu is not None:
    params += ["train.strategy = 'tpu'", f"train.tpu_address = {FLAGS.tpu!r}"]
  try:
    configuration.parse_gin(FLAGS.gin_file, params, model_dir)
  except Exception as e:  # pylint: disable=broad-except  (a gin file or binding: a setting)
    _fail(e, 2)
  try:
    result = training.train(model_dir)
  except preemption.StopRequested as e:
    training.log(configuration.without_gin_context(e))
    _exit_now(e.exit_code)
  except KeyboardInterrupt:  # a signal before the training loop (start-up)
    _interrupted("before training started")
  except (ValueError, FileNotFoundError, workdir_lock.ModelDirBusyError) as e:
    _fail(e, 2)
  except Exception as e:  # pylint: disable=broad-except
    _fail(e, 1)
  if FLAGS.export and result["chief"]:
    output = os.path.join(model_dir, "export")
    try:  # the run's own export: replaced by each run that finishes
      meta = frozen_encoder.export(model_dir, output)
    except KeyboardInterrupt:
      _interrupted(f"during the export: {output} is left as it was; the checkpoints are "
                   "saved (python -m cola_tf.export exports them)")
    except Exception as e:  # pylint: disable=broad-except
      _fail(e, 1)
    training.log(f"exported the frozen encoder ({meta['embedding_size']}-d, step "
                f"{meta['training_step']}) to {output}")


def _fail(error, code):
  """One line naming the error (our errors name their binding), then exit at once."""
  if FLAGS.traceback:
    traceback.print_exc()
  message = configuration.without_gin_context(error) or type(error).__name__
  if isinstance(error, tf.errors.OpError):
    message = f"{type(error).__name__}: {error.message.strip()}"
  message = " ".join(line.strip() for line in message.splitlines())
  training.log(f"ERROR: {message}" + ("" if FLAGS.traceback else " (--traceback for details)"))
  _exit_now(code)


def _interrupted(when):
  signum = preemption.interrupted_by() or 2
  training.log(f"stopped on {signal.Signals(signum).name} {when}")
  _exit_now(128 + signum)


def _exit_now(code):
  # os._exit, not sys.exit: tearing down a failed input pipeline at interpreter shutdown can
  # wait forever on a parallel map's threads (seen: over 13 minutes after a DataLossError).
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


def _help():
  """--help: this docstring, the flags, and the main gin bindings with their defaults."""
  from cola_tf import encoders  # pylint: disable=import-outside-toplevel
  from cola_tf.probe import online as evaluation  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import optimization  # pylint: disable=import-outside-toplevel
  print(__doc__.strip() + "\n\nFlags:\n" + FLAGS.module_help(sys.modules[__name__]) + "\n")
  print("\n".join(configuration.bindings_help({
      "train": (training.train, ["model_dir"]),
      "build_encoder": (encoders.build_encoder, ["input_shape"]),
      "build_adamw": (optimization.build_adamw, ["total_steps", "steps_per_epoch",
                                                 "global_batch_size", "batch_size_scaling"]),
      "OnlineEvaluation": (evaluation.OnlineEvaluation, [])})))
  print(f"  (build_encoder.name: one of {', '.join(encoders.ENCODERS)})")


if __name__ == "__main__":
  if {"-h", "--help", "-help", "--helpshort"} & set(sys.argv[1:]):
    _help()
    sys.exit(0)
  distribute.initialise_devices_quietly()  # before absl's start-up touches the devices
  app.run(main)
