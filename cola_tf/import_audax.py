r"""Turns an audax COLA checkpoint into a cola_tf export (the SavedModel hear_module, heareval,
the linear probe and the torch suites load).

  python -m cola_tf.import_audax --checkpoint CKPT --gin_file convnext_tiny --output OUT

CKPT: audax's `checkpoint_N` file, or its workdir (the newest `checkpoint_N` in it), e.g. the
published ConvNeXt-Tiny, ConvNeXt-Large and EfficientNet-B0 COLA checkpoints linked from
audax's recipes/cola/README.md. `--gin_file` names the encoder's recipe config (convnext_tiny,
convnext_large, efficientnet_b0): it fixes the encoder and the frontend the checkpoint was
trained with (e.g. EfficientNet's per-window log-mel standardisation); `--gin_param` adds
bindings (a checkpoint of another size: `build_encoder.depths` / `dims`). The embedding size
is read from the checkpoint. Every parameter and BatchNorm statistic is mapped
(cola_tf.export.from_audax); one left over, missing or of another shape is one error line.
Exit codes: 0 written; 2 a bad checkpoint, config or request; 1 writing failed.
"""
import argparse
import sys

import official.modeling.optimization  # noqa: F401  (before gin parses the config)
import tensorflow as tf

from cola_tf import logs
from cola_tf.export import command
from cola_tf.export import from_audax
from cola_tf.runtime import distribute


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--checkpoint", required=True, help="audax checkpoint_N file or its folder")
  p.add_argument("--gin_file", action="append", required=True,
                 help="the encoder's config (convnext_tiny, convnext_large, efficientnet_b0)")
  p.add_argument("--gin_param", action="append", default=[], help="further gin bindings")
  p.add_argument("--output", required=True, help="where to write the export")
  p.add_argument("--overwrite", action="store_true", help="replace an existing export")
  a = p.parse_args(argv)
  if tf.io.gfile.exists(a.output) and not a.overwrite:
    logs.log(f"error: import_audax: {a.output} exists; pass --overwrite to replace it",
             error=True)
    return 2
  meta, code = command.write_for_command(
      lambda: from_audax.write_export(a.checkpoint, a.gin_file, a.gin_param, a.output),
      a.output, setting_errors=(ValueError, SyntaxError))  # SyntaxError: a gin file's
  if code:
    return code
  logs.log(f"exported audax's {meta['encoder']} (step {meta['training_step']}, "
           f"{meta['embedding_size']}-d embeddings) to {a.output}")
  return 0


if __name__ == "__main__":
  distribute.initialise_devices_quietly()
  sys.exit(main())
