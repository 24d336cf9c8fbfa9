r"""All benchmarks in one table: `python -m cola_tf.benchmarks [--batch 32] [--sections ...]`.

Each train-step configuration runs in a fresh process (precision policy and thread settings
are per process): train pairs/s and encoder-only clips/s per encoder, precision and XLA;
forward FLOPs per clip and the train step's achieved FLOP/s as a fraction of this machine's
measured float32 matmul peak; the fixed comparison point (EfficientNet-B0, batch 32, 98x64,
1 intra- and 1 inter-op thread, float32 and bf16, next to the same step as a plain tf_keras
compile()+fit() loop); HEAR-module throughput in seconds of audio embedded per second; then
the input-pipeline table (cola_tf.benchmarks.input_pipeline) and the ratio of the pipeline's
pairs/s to each float32 train step's (the pipeline must keep ahead of the model on the same
cores). Warm-up is excluded and every figure is a median of repeated runs. `--sections`
picks a subset (train, fixed, hear, pipeline).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from cola_tf import SAMPLE_RATE
from cola_tf import logs

def default_configs():
  """(encoder, precision, jit, variant) rows of the train-step table: float32, bf16 and
  float32 with XLA for every encoder the registry marks `benchmarked`, then its variants."""
  from cola_tf.encoders import ENCODERS  # pylint: disable=import-outside-toplevel
  rows = []
  for name, entry in ENCODERS.items():
    if entry.benchmarked:
      rows += [(name, "float32", False, None), (name, "mixed_bfloat16", False, None),
               (name, "float32", True, None)]
      rows += [(name, v["precision"], False, label) for label, v in entry.variants.items()]
  return rows


SECTIONS = ("train", "fixed", "hear", "pipeline")


def _train_step(args):
  cmd = [sys.executable, "-m", "cola_tf.benchmarks.train_step", "--json", *args]
  proc = subprocess.run(cmd, capture_output=True, text=True,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  if proc.returncode:
    return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def hear_throughput(seconds=10.0, clips=8, repeats=3):
  """Seconds of audio embedded per second by hear_module (scene + timestamp embeddings)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import hear_module  # pylint: disable=import-outside-toplevel
  from cola_tf.export import frozen_encoder  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "cola_tf.train", "--gin_file", "tiny",
                    "--model_dir", tmp, "--gin_param", "train.total_steps = 2",
                    "--gin_param", "build_adamw.warmup_steps = 1", "--noexport"],
                   check=True, capture_output=True)
    frozen_encoder.export(tmp, os.path.join(tmp, "export"))
    model = hear_module.load_model(os.path.join(tmp, "export"))
    audio = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (clips, int(seconds * SAMPLE_RATE)))
                        .astype(np.float32))
    out = {}
    for name, fn in (("scene", hear_module.get_scene_embeddings),
                     ("timestamp", hear_module.get_timestamp_embeddings)):
      fn(audio[:1], model)
      rates = []
      for _ in range(repeats):
        started = time.perf_counter()
        fn(audio, model)
        rates.append(clips * seconds / (time.perf_counter() - started))
      out[name] = sorted(rates)[len(rates) // 2]
  return out


def fixed_point(steps, repeats):
  """EfficientNet-B0, batch 32, 98x64, 1+1 threads: float32, bf16, and tf_keras fit()."""
  print("\nfixed point: EfficientNet-B0, batch 32, 98x64, 1 intra + 1 inter-op thread", flush=True)
  fixed = ["--encoder", "efficientnet_b0", "--frames", "98", "--threads", "1", "--batch", "32",
           "--steps", str(steps), "--repeats", str(repeats)]
  for label, extra, key in (("float32", ["--precision", "float32"], "train_pairs_per_s"),
                            ("mixed_bfloat16", ["--precision", "mixed_bfloat16"],
                             "train_pairs_per_s"),
                            ("keras fit() float32", ["--keras_fit"], "keras_fit_pairs_per_s")):
    r = _train_step(fixed + extra)
    value = r.get(key)
    print(f"  {label:20s} {value:.1f} pairs/s" if value else f"  {label}: {r}", flush=True)


def _train_configs(encoders, parser):
  """The default rows, or float32 and bf16 rows for each of `encoders` (comma-separated)."""
  if not encoders:
    return default_configs()
  from cola_tf.encoders import ENCODERS  # pylint: disable=import-outside-toplevel
  unknown = sorted(set(encoders.split(",")) - set(ENCODERS))
  if unknown:
    parser.error(f"--encoders: unknown {unknown}; choose from {', '.join(ENCODERS)}")
  return [(e, precision, False, None) for e in encoders.split(",")
          for precision in ("float32", "mixed_bfloat16")]


def _train_row(config, common, peak, train_rates):
  """Runs one train-step configuration and prints its row (float32 rates kept)."""
  encoder, precision, jit, variant = config
  args = ["--encoder", encoder, "--precision", precision] + common
  args += ["--jit"] if jit else []
  args += ["--variant", variant] if variant else []
  r = _train_step(args)
  name = encoder + (f" ({variant})" if variant else "")
  if "error" in r:
    print(f"{name:28s} {precision:15s} {'on' if jit else 'off':4s} failed: {r['error']}",
          flush=True)
    return
  if precision == "float32" and not jit and not variant:
    train_rates[encoder] = r["train_pairs_per_s"]
  print(f"{name:28s} {precision:15s} {'on' if jit else 'off':4s} "
        f"{r['train_pairs_per_s']:13.1f} {r['embed_clips_per_s']:13.1f} "
        f"{r['forward_gflops_per_clip']:11.3f} {100 * r['train_gflops_per_s'] / peak:8.1f}%",
        flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--sections", default=",".join(SECTIONS),
                 help=f"comma-separated subset of {','.join(SECTIONS)}")
  p.add_argument("--encoders", default=None,
                 help="train section: these registered encoders (float32 and bf16 each) "
                      "instead of the default table")
  a = p.parse_args(argv)
  sections = set(a.sections.split(","))
  configs = _train_configs(a.encoders, p)
  if not sections <= set(SECTIONS):
    p.error(f"--sections: unknown {sorted(sections - set(SECTIONS))}; choose from {SECTIONS}")
  from cola_tf.benchmarks import input_pipeline  # pylint: disable=import-outside-toplevel
  from cola_tf.benchmarks import train_step  # pylint: disable=import-outside-toplevel
  print(f"machine: {input_pipeline.machine()}", flush=True)
  peak = train_step.matmul_peak_gflops("float32")
  print(f"measured matmul peak: float32 {peak:.0f} GFLOP/s, "
        f"bfloat16 {train_step.matmul_peak_gflops('bfloat16'):.0f} GFLOP/s\n", flush=True)
  common = ["--batch", str(a.batch), "--steps", str(a.steps), "--repeats", str(a.repeats)]
  train_rates = {}
  configs = configs if "train" in sections else []
  if "pipeline" in sections and not configs:  # the ratio needs the float32 steps
    configs = [c for c in default_configs() if c[1] == "float32" and not c[2] and not c[3]]
  if configs:
    print(f"{'encoder':28s} {'precision':15s} {'XLA':4s} {'train pairs/s':>13s} "
          f"{'embed clips/s':>13s} {'GFLOPs/clip':>11s} {'% of peak':>9s}", flush=True)
  for config in configs:
    _train_row(config, common, peak, train_rates)
  if "fixed" in sections:
    fixed_point(a.steps, a.repeats)
  if "hear" in sections:
    hear = hear_throughput()
    print(f"\nhear_module (small_cnn export, 10 s clips): scene {hear['scene']:.0f} s of audio/s, "
          f"timestamp {hear['timestamp']:.0f} s of audio/s", flush=True)
  if "pipeline" in sections:
    print("\ninput pipeline:", flush=True)
    pipeline_rates = input_pipeline.main(["--batch", str(a.batch)])
    print("\npipeline alone / train step alone (float32, same cores):", flush=True)
    for source in ("folder wav", "tfrecord pcm16", "tfrecord flac"):
      pairs = max(pipeline_rates[source].values())  # all threads
      for encoder, rate in train_rates.items():
        print(f"  {source:22s} {pairs:7.0f} pairs/s vs {encoder:16s} "
              f"{rate:6.1f} pairs/s: {pairs / rate:5.1f}x", flush=True)

if __name__ == "__main__":
  main()
