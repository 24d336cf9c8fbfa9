r"""Input-pipeline throughput per source layout and audio format, on a generated corpus.

  python -m cola_tf.benchmarks.input_pipeline [--clips 48] [--seconds 5] [--batch 32]

For each layout (folder of WAV / FLAC / OGG / MP3, CSV manifest, TFRecord shards of FLAC)
it prints decode-only clips/s (five passes, decoded to mono 16 kHz float32) and the full
COLA pair pipeline's pairs/s (decode, two crops, log-mel, SpecAugment, batching), each the
median of --repeats runs after a warm-up. Figures depend on the cores available: compare
rows of one run, not runs on different machines.
"""
import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import soundfile as sf
import tensorflow as tf

from cola_tf import frontend as frontend_lib
from cola_tf.data import make_tfrecords
from cola_tf.data import pipeline
from cola_tf.data import sources
from cola_tf.data import synthetic

FORMATS = (("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", None))


def machine():
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return (f"{cpu}; {os.cpu_count()} cores; TensorFlow {tf.__version__}; "
          f"Python {platform.python_version()}")


def make_corpus(root, clips, seconds):
  rng = np.random.default_rng(0)
  audio = [synthetic.synth_clip(rng, seconds) for _ in range(clips)]
  for ext, subtype in FORMATS:
    os.makedirs(os.path.join(root, ext))
    for i, x in enumerate(audio):
      sf.write(os.path.join(root, ext, f"clip{i:04d}.{ext}"), x, 16000, subtype=subtype)
  manifest = os.path.join(root, "manifest.csv")
  with open(manifest, "w") as f:
    f.write("files,duration\n")
    for i in range(clips):
      f.write(f"wav/clip{i:04d}.wav,{seconds}\n")
  make_tfrecords.make_tfrecords(manifest, os.path.join(root, "tfrecords"), 4, "flac", workers=2)
  return manifest


def timed(fn, repeats):
  fn()  # warm-up: tracing, file cache
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    count = fn()
    times.append(count / (time.perf_counter() - started))
  return statistics.median(times)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--clips", type=int, default=48)
  p.add_argument("--seconds", type=float, default=5.0)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--batches", type=int, default=12)
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args(argv)
  frontend = frontend_lib.LogMelFrontend()
  print(f"machine: {machine()}")
  print(f"corpus: {a.clips} clips of {a.seconds:g} s per layout; pair batches of {a.batch}")
  with tempfile.TemporaryDirectory() as root:
    manifest = make_corpus(root, a.clips, a.seconds)
    layouts = [(f"folder {ext}", sources.FolderSource(os.path.join(root, ext), (ext,)))
               for ext, _ in FORMATS]
    layouts.append(("manifest (wav)", sources.ManifestSource(manifest)))
    layouts.append(("tfrecord (flac, zlib)", sources.TFRecordSource(
        os.path.join(root, "tfrecords", "shard-*.tfrecord"))))
    print(f"\n{'source':24s} {'decode clips/s':>15s} {'pairs/s':>10s}")
    results = {}
    for name, source in layouts:
      def decode_pass(passes=5):  # several passes per iterator: per-pass start-up amortised
        clips = pipeline.decoded_clips(source, 16000, seed=1).repeat(passes)
        return sum(1 for _ in clips)
      ds = pipeline.pair_dataset(source, None, a.batch, frontend, seed=1)
      iterator = iter(ds)

      def pairs():
        for _ in range(a.batches):
          next(iterator)
        return a.batches * a.batch
      results[name] = (timed(decode_pass, a.repeats), timed(pairs, a.repeats))
      print(f"{name:24s} {results[name][0]:15.0f} {results[name][1]:10.0f}", flush=True)
  return results


if __name__ == "__main__":
  main()
