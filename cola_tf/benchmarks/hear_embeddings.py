r"""HEAR embedding throughput of exported encoders: seconds of audio embedded per second.

  python -m cola_tf.benchmarks.hear_embeddings [--seconds 20] [--clips 1] [--repeats 3]
      [--encoders small_cnn,efficientnet_b0,convnext_tiny] [--json]

Exports each encoder (its shipped gin config, random initialisation: throughput does not depend on
the weights) with `cola_tf.frozen_encoder.export`, loads the SavedModel with TensorFlow alone and
times, on the same random audio in the same process, scene embeddings, timestamp embeddings
(one STFT per clip, the export's `timestamp_embeddings`), and the per-window references
(`timestamp_embeddings_reference`, `scene_embeddings_reference`: each window's waveform
through the whole frontend). Each figure is the median of --repeats timed calls after one
warm-up call; the ratios timestamp/scene and new/reference come from the same run.
A 0.96 s window every 50 ms means ~20 windows per second of audio for timestamps against
~2.1 for scenes (every 0.48 s), so the encoder alone bounds timestamp/scene near 0.1.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

from cola_tf import SAMPLE_RATE
from cola_tf import export_metadata

# Encoders with a shipped config of their own; any other registered encoder is benchmarked
# with tiny.gin's settings and build_encoder.name set to it.
CONFIGS = {"small_cnn": "tiny.gin", "efficientnet_b0": "efficientnet_b0.gin",
           "convnext_tiny": "convnext_tiny.gin"}


def export_random_init(encoder, folder, seed=0):
  """Exports `encoder`'s gin config at random init to folder/export; returns that path."""
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf import frozen_encoder  # pylint: disable=import-outside-toplevel
  model_dir = os.path.join(folder, encoder)
  os.makedirs(model_dir)
  # export reads a model_dir's operative config: the shipped config, includes resolved.
  gin.clear_config()
  configuration.parse_gin([CONFIGS.get(encoder, "tiny.gin")],
                          [] if encoder in CONFIGS else [f"build_encoder.name = '{encoder}'"])
  with open(os.path.join(model_dir, configuration.OPERATIVE_CONFIG), "w") as f:
    f.write(gin.config_str())
  gin.clear_config()
  output = os.path.join(model_dir, "export")
  frozen_encoder.export(model_dir, output, random_init_seed=seed)
  return output


def time_calls(fn, audio, repeats):
  """Median seconds of one call (after one warm-up call)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  def call():
    out = fn(audio)
    out = out[0] if isinstance(out, (tuple, list)) else out
    float(tf.reduce_sum(out))  # wait for the result
  call()
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    call()
    times.append(time.perf_counter() - started)
  return statistics.median(times)


def run(encoder, seconds, clips, repeats, folder):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  started = time.perf_counter()
  path = export_random_init(encoder, folder)
  export_s = time.perf_counter() - started
  saved = tf.saved_model.load(path)
  frontend = export_metadata.read(path)["frontend"]
  audio = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (clips, int(seconds * SAMPLE_RATE)))
                      .astype(np.float32))
  audio_s = clips * seconds
  rates = {}
  for name, fn in (("scene", saved.scene_embeddings),
                   ("scene_reference", saved.scene_embeddings_reference),
                   ("timestamp", saved.timestamp_embeddings),
                   ("timestamp_reference", saved.timestamp_embeddings_reference)):
    rates[name] = audio_s / time_calls(fn, audio, repeats)
  return {"encoder": encoder, "export_s": export_s,
          "frontend": f"{frontend['waveform_normalization']}, {frontend['padding']}, "
                      f"{frontend['normalization']}",
          **rates,
          "timestamp_over_scene": rates["timestamp"] / rates["scene"],
          "timestamp_new_over_reference": rates["timestamp"] / rates["timestamp_reference"],
          "scene_new_over_reference": rates["scene"] / rates["scene_reference"]}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seconds", type=float, default=20.0, help="length of each clip")
  p.add_argument("--clips", type=int, default=1, help="clips per call")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--encoders", default=",".join(CONFIGS),
                 help="comma-separated registered encoders (cola_tf.encoders.ENCODERS)")
  p.add_argument("--json", action="store_true", help="also print one JSON line per encoder")
  a = p.parse_args(argv)
  encoders = a.encoders.split(",")
  from cola_tf.encoders import ENCODERS  # pylint: disable=import-outside-toplevel
  unknown = sorted(set(encoders) - set(ENCODERS))
  if unknown:
    p.error(f"--encoders: unknown {unknown}; choose from {', '.join(ENCODERS)}")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from cola_tf import distribute  # pylint: disable=import-outside-toplevel
  distribute.initialise_devices_quietly()
  from cola_tf.benchmarks import input_pipeline  # pylint: disable=import-outside-toplevel
  print(f"machine: {input_pipeline.machine()}; load average {os.getloadavg()[0]:.2f}",
        flush=True)
  print(f"audio: {a.clips} x {a.seconds:g} s random noise per call; median of {a.repeats} "
        "calls; seconds of audio embedded per second (ref = each window through the whole "
        "frontend)\n", flush=True)
  print(f"{'encoder':16s} {'frontend':40s} {'scene':>7s} {'scene ref':>9s} {'timestamp':>9s} "
        f"{'ts ref':>7s} {'ts/scene':>8s} {'ts new/ref':>10s} {'scene new/ref':>13s}",
        flush=True)
  results = []
  with tempfile.TemporaryDirectory() as folder:
    for encoder in encoders:
      r = run(encoder, a.seconds, a.clips, a.repeats, folder)
      results.append(r)
      print(f"{encoder:16s} {r['frontend']:40s} {r['scene']:7.1f} {r['scene_reference']:9.1f} "
            f"{r['timestamp']:9.1f} {r['timestamp_reference']:7.1f} "
            f"{r['timestamp_over_scene']:8.3f} {r['timestamp_new_over_reference']:10.2f} "
            f"{r['scene_new_over_reference']:13.2f}", flush=True)
  print(f"\nload average at the end {os.getloadavg()[0]:.2f}", flush=True)
  if a.json:
    for r in results:
      print(json.dumps(r), flush=True)
  return results


if __name__ == "__main__":
  main()
