r"""COLA pretraining: `python -m cola_tf.train --gin_file gin/tiny.gin [--model_dir DIR]`.

Flags -> gin -> `cola_tf.trainer.train()`, then (by default) export of the frozen encoder to
MODEL_DIR/export. The operative gin config saved in MODEL_DIR is parsed first when a run
resumes there, so `python -m cola_tf.train --model_dir DIR` continues a run as configured.
"""
import os
import sys

# Model Garden registers its configs on import; it must come before gin parses any file.
import official.modeling.optimization  # noqa: F401  pylint: disable=unused-import
from absl import app
from absl import flags
from absl import logging as absl_logging

from cola_tf import configuration
from cola_tf import export
from cola_tf import trainer

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings applied after the files, "
                          "e.g. \"train.total_steps = 500\".")
flags.DEFINE_string("model_dir", None, "Where checkpoints, summaries and the operative config "
                    "go (local or gs://). Default: runs/<name of the last gin file>.")
flags.DEFINE_string("tpu", None, "TPU name or address: sets train.strategy = 'tpu'.")
flags.DEFINE_bool("export", True, "At the end, export the frozen encoder to MODEL_DIR/export "
                  "(see cola_tf.export).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # library INFO chatter off unless asked for (-v 0)
    absl_logging.set_verbosity(absl_logging.WARNING)
  model_dir = FLAGS.model_dir
  if model_dir is None:
    if not FLAGS.gin_file:
      raise app.UsageError("pass --gin_file (e.g. gin/tiny.gin) and/or --model_dir")
    model_dir = os.path.join("runs", os.path.splitext(os.path.basename(FLAGS.gin_file[-1]))[0])
  params = list(FLAGS.gin_param)
  if FLAGS.tpu is not None:
    params += ["train.strategy = 'tpu'", f"train.tpu_address = {FLAGS.tpu!r}"]
  try:
    configuration.parse_gin(FLAGS.gin_file, params, model_dir)
    result = trainer.train(model_dir)
  except trainer.NonFiniteLossError as e:
    trainer.log(f"ERROR: {e}")
    sys.exit(1)
  if FLAGS.export and result["chief"]:
    output = os.path.join(model_dir, "export")
    meta = export.export(model_dir, output)
    trainer.log(f"exported the frozen encoder ({meta['embedding_size']}-d, step "
                f"{meta['training_step']}) to {output}")


if __name__ == "__main__":
  app.run(main)
