r"""Input-pipeline throughput per layout and format, per core, on a generated corpus.

  python -m cola_tf.benchmarks.input_pipeline [--clips 48] [--seconds 10] [--batch 32]

For TFRecord shards (pcm16, FLAC, WAV) and folders (WAV, FLAC, OGG, MP3) it runs the full
COLA pair pipeline (read, decode, two crops, waveform normalisation, log-mel, SpecAugment,
batching) with its tf.data work confined to 1 and then 2 threads (a private thread pool, one
thread per op), and prints pairs/s per core at each, the 2-thread/1-thread ratio (does the
layout scale with cores, or does Python's GIL cap it?) and each layout's 1-thread rate over
FLAC TFRecords'. Each figure is the median of --repeats timed runs after a warm-up. Figures
depend on the machine: compare rows of one run.
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

from cola_tf import SAMPLE_RATE
from cola_tf import frontend as frontend_lib
from cola_tf.data import tfrecord_writer
from cola_tf.data import pipeline
from cola_tf.data import sources
from cola_tf.data import tfrecord_source
from cola_tf.data import synthetic
from cola_tf import logs

FOLDER_FORMATS = (("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", None))
RECORD_FORMATS = ("flac", "pcm16", "wav")  # flac first: the baseline of the last column
THREADS = (1, 2)


def cpu():
  """The CPU as every figure is labelled: its model, whether it has AMX and AVX512_BF16 (bf16
  speed depends on them), its cores."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      lines = f.read().splitlines()
    model = next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
    flags = set(next(l.split(":", 1)[1] for l in lines if l.startswith("flags")).split())
  except (OSError, StopIteration):
    pass
  marks = ", ".join(f"{'with' if flag in flags else 'without'} {name}"
                    for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16")))
  return f"{model}, {marks}, {os.cpu_count()} cores"


def machine():
  return f"{cpu()}; TensorFlow {tf.__version__}; Python {platform.python_version()}"


def make_layouts(root, clips, seconds):
  """[(name, source)] over one generated corpus in every layout."""
  rng = np.random.default_rng(0)
  audio = [synthetic.synth_clip(rng, seconds) for _ in range(clips)]
  layouts = []
  for ext, subtype in FOLDER_FORMATS:
    os.makedirs(os.path.join(root, ext))
    for i, x in enumerate(audio):
      sf.write(os.path.join(root, ext, f"clip{i:04d}.{ext}"), x, SAMPLE_RATE, subtype=subtype)
    layouts.append((f"folder {ext}", sources.FolderSource(os.path.join(root, ext), (ext,))))
  manifest = os.path.join(root, "manifest.csv")
  with open(manifest, "w") as f:
    f.write("files\n" + "".join(f"wav/clip{i:04d}.wav\n" for i in range(clips)))
  for fmt in RECORD_FORMATS:
    out = os.path.join(root, f"records_{fmt}")
    tfrecord_writer.make_tfrecords(manifest, out, 4, fmt, workers=2)
    layouts.insert(len(layouts) - len(FOLDER_FORMATS), (
        f"tfrecord {fmt}", tfrecord_source.TFRecordSource(os.path.join(out, "shard-*.tfrecord"))))
  return layouts


def pairs_per_second(source, threads, batch, batches, repeats):
  """Median pairs/s of the pair pipeline with tf.data confined to `threads` threads."""
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  options.autotune.cpu_budget = threads
  ds = pipeline.pair_dataset(source, None, batch, frontend_lib.LogMelFrontend(), seed=1)
  iterator = iter(ds.with_options(options))
  for _ in range(2):  # warm-up: tracing, file cache, autotuning
    next(iterator)
  rates = []
  for _ in range(repeats):
    started = time.perf_counter()
    for _ in range(batches):
      next(iterator)
    rates.append(batches * batch / (time.perf_counter() - started))
  return statistics.median(rates)


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--clips", type=int, default=48)
  p.add_argument("--seconds", type=float, default=10.0, help="clip length (AudioSet: 10 s)")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args(argv)
  print(f"machine: {machine()}")
  print(f"corpus: {a.clips} clips of {a.seconds:g} s per layout; pair batches of {a.batch}; "
        f"tf.data confined to {' and '.join(map(str, THREADS))} thread(s)", flush=True)
  results = {}
  with tempfile.TemporaryDirectory() as root:
    layouts = make_layouts(root, a.clips, a.seconds)
    print(f"\n{'source':16s} {'pairs/s/core @1':>16s} {'pairs/s/core @2':>16s} "
          f"{'@2 / @1':>8s} {'vs tfrecord flac @1':>20s}", flush=True)
    for name, source in layouts:
      results[name] = {t: pairs_per_second(source, t, a.batch, a.batches, a.repeats)
                       for t in THREADS}
      one, two = results[name][1], results[name][2]
      base = results.get("tfrecord flac", {}).get(1)
      versus = f"{one / base:19.2f}x" if base else f"{'':>20s}"
      print(f"{name:16s} {one:16.0f} {two / 2:16.0f} {two / one:7.2f}x {versus}", flush=True)
  return results


if __name__ == "__main__":
  main()
