r"""Writes a source's clips into TFRecord shards (see cola_tf.data.tfrecord_writer).

  python -m cola_tf.data.make_tfrecords --manifest m.csv --out DIR --shards N \
      [--format pcm16|flac|wav|copy] [--compression ZLIB|GZIP|NONE] [--seed S] \
      [--workers K] [--overwrite]
  python -m cola_tf.data.make_tfrecords --gin_file tiny [--gin_param ...] --out DIR ...

`--manifest` reads a CSV manifest; `--gin_file` / `--gin_param` take the source the trainer
would read (`train.source` in those configs, e.g. `--gin_param "train.source =
@FolderSource()" --gin_param "FolderSource.root = '/data/audio'"`): any file-based source.
"""
import argparse
import signal
import sys

from cola_tf.runtime import preemption
from cola_tf.runtime.training import configured_source

from cola_tf.data.tfrecord_writer import FORMATS
from cola_tf.data.tfrecord_writer import PCM16
from cola_tf.data.tfrecord_writer import log
from cola_tf.data.tfrecord_writer import make_tfrecords
from cola_tf import logs


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument("--manifest", help="CSV with a 'files' column")
  what.add_argument("--gin_file", action="append", help="configs whose train.source to write")
  p.add_argument("--gin_param", action="append", default=[],
                 help="gin bindings, with --gin_file (e.g. the source's settings)")
  p.add_argument("--out", required=True, help="output folder for the shards")
  p.add_argument("--shards", type=int, required=True)
  p.add_argument("--format", default=PCM16, choices=FORMATS,
                 help="pcm16 (default): decoded without Python, for TPU pods / tf.data service")
  p.add_argument("--compression", default="ZLIB", choices=["ZLIB", "GZIP", "NONE"])
  p.add_argument("--seed", type=int, default=0, help="seed of the shuffle of rows into shards")
  p.add_argument("--workers", type=int, default=None)
  p.add_argument("--overwrite", action="store_true",
                 help="clear shards written for another manifest or settings, then write")
  a = p.parse_args(argv)
  received = preemption.interrupt_on_signals([signal.SIGTERM])  # Ctrl-C: Python's own
  try:
    source = a.manifest or configured_source(a.gin_file or [], a.gin_param)
    make_tfrecords(source, a.out, a.shards, a.format, a.compression, a.workers, a.seed,
                   a.overwrite)
  except (ValueError, FileNotFoundError) as e:
    log(f"error: {e}", error=True)
    return 2
  except KeyboardInterrupt:
    signum = received()
    log(f"stopped by {signum.name}: the shards finished so far are kept (each "
        "is written whole); the same command writes the rest", error=True)
    return 128 + signum
  return 0


if __name__ == "__main__":
  sys.exit(main())
