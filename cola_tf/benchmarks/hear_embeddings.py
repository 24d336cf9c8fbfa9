r"""HEAR embedding throughput of exported encoders: seconds of audio embedded per second.

  python -m cola_tf.benchmarks.hear_embeddings [--seconds 20] [--clips 1] [--repeats 3]
      [--encoders small_cnn,efficientnet_b0,convnext_tiny] [--memory_minutes 20] [--json]

Exports each encoder (its shipped gin config, random initialisation: throughput does not depend on
the weights) with `cola_tf.export.frozen_encoder.export`, loads the SavedModel with TensorFlow alone and
times, on the same random audio in the same process, scene embeddings, timestamp embeddings
(one STFT per clip, the export's `timestamp_embeddings`), and the per-window references
(`timestamp_embeddings_reference`, `scene_embeddings_reference`: each window's waveform
through the whole frontend), and the fast mode's (`hear_module.load_model(..., fast=True)`:
one encoder pass per clip, `*_embeddings_fast`). Each figure is the median of --repeats
timed calls after one warm-up call; the ratios come from the same run.
A 0.96 s window every 50 ms means ~20 windows per second of audio for timestamps against
~2.1 for scenes (every 0.48 s), so the encoder alone bounds exact timestamp/scene near 0.1;
the fast mode encodes each second about once for both.
Then, for each encoder, the peak resident memory of a fresh process embedding one clip of
--memory_minutes (scene, then timestamps; exact, then fast) through hear_module, against its
memory once the export is loaded and warm.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

from cola_tf import SAMPLE_RATE
from cola_tf import logs
from cola_tf.export import metadata as export_metadata



def export_random_init(encoder, folder, seed=0):
  """Exports `encoder`'s gin config at random init to folder/export; returns that path."""
  import gin  # pylint: disable=import-outside-toplevel
  from cola_tf.runtime import configuration  # pylint: disable=import-outside-toplevel
  from cola_tf.export import frozen_encoder  # pylint: disable=import-outside-toplevel
  model_dir = os.path.join(folder, encoder)
  os.makedirs(model_dir)
  # export reads a model_dir's operative config: the shipped config, includes resolved.
  gin.clear_config()
  # The shipped config that selects this encoder; for any other, tiny.gin's settings.
  shipped = configuration.config_of_encoder(encoder)
  configuration.parse_gin([shipped or "tiny.gin"],
                          [] if shipped else [f"build_encoder.name = '{encoder}'"])
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


# Run in a fresh process per measurement. Peak and current resident memory from
# /proc/self/status (VmHWM, VmRSS): ru_maxrss would carry the parent's peak across fork and
# exec. The peak is reset (clear_refs 5) once the export is loaded and warm, so it is the
# embedding's own.
_MEMORY_PROBE = """
import json, sys
import numpy as np
import hear_module

def status_mib(field):
  with open("/proc/self/status") as f:
    line = next(l for l in f if l.startswith(field + ":"))
  return int(line.split()[1]) / 1024

path, kind, minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
embed = getattr(hear_module, f"get_{kind.split()[0]}_embeddings")
model = hear_module.load_model(path, fast=kind.endswith(" fast"))
embed(np.zeros((1, 16000), np.float32), model)  # traced and warm
audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1, int(minutes * 60 * 16000)))
audio = audio.astype(np.float32)
with open("/proc/self/clear_refs", "w") as f:
  f.write("5")
loaded = status_mib("VmRSS")
out = embed(audio, model)
out = out[0] if isinstance(out, tuple) else out
print(json.dumps({"loaded_mib": loaded, "peak_mib": status_mib("VmHWM"),
                  "output_mib": out.numpy().nbytes / 2**20}))
"""


def peak_memory(path, kind, minutes):
  """{loaded_mib, peak_mib, output_mib} of a fresh process that loads the export and embeds
  one clip of `minutes` (kind: scene | timestamp, with ' fast' for the fast mode) through
  hear_module: its resident memory with the export loaded and the clip in memory, its peak
  while embedding, the output's size."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, path, kind, str(minutes)],
                        capture_output=True, text=True, env=env, check=False)
  if proc.returncode:
    raise RuntimeError(f"memory probe ({kind}, {minutes} min) failed: {proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


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
                   ("timestamp_reference", saved.timestamp_embeddings_reference),
                   ("scene_fast", saved.scene_embeddings_fast),
                   ("timestamp_fast", saved.timestamp_embeddings_fast)):
    rates[name] = audio_s / time_calls(fn, audio, repeats)
  return {"encoder": encoder, "export_s": export_s,
          "frontend": f"{frontend['waveform_normalization']}, {frontend['padding']}, "
                      f"{frontend['normalization']}",
          **rates,
          "timestamp_over_scene": rates["timestamp"] / rates["scene"],
          "timestamp_new_over_reference": rates["timestamp"] / rates["timestamp_reference"],
          "scene_new_over_reference": rates["scene"] / rates["scene_reference"],
          "timestamp_fast_over_scene": rates["timestamp_fast"] / rates["scene"],
          "timestamp_fast_over_exact": rates["timestamp_fast"] / rates["timestamp"]}


def _memory_table(results, folder, minutes):
  print(f"\npeak resident memory embedding one {minutes:g}-minute clip through hear_module "
        "(fresh process each; MiB):", flush=True)
  print(f"{'encoder':16s} {'embeddings':14s} {'loaded':>8s} {'peak':>8s} {'peak - loaded':>13s} "
        f"{'output':>8s} {'wall s':>7s}", flush=True)
  for r in results:
    path = os.path.join(folder, r["encoder"], "export")
    for kind in ("scene", "timestamp", "scene fast", "timestamp fast"):
      started = time.perf_counter()
      m = peak_memory(path, kind, minutes)
      m["wall_s"] = time.perf_counter() - started
      r[f"{kind.replace(' ', '_')}_memory_{minutes:g}min"] = m
      print(f"{r['encoder']:16s} {kind:14s} {m['loaded_mib']:8.0f} {m['peak_mib']:8.0f} "
            f"{m['peak_mib'] - m['loaded_mib']:13.0f} {m['output_mib']:8.1f} "
            f"{m['wall_s']:7.1f}", flush=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--seconds", type=float, default=20.0, help="length of each clip")
  p.add_argument("--clips", type=int, default=1, help="clips per call")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--encoders", default=None,
                 help="comma-separated registered encoders (cola_tf.encoders.ENCODERS; "
                      "default: those the registry marks benchmarked)")
  p.add_argument("--memory_minutes", type=float, default=20.0,
                 help="also measure peak memory embedding one clip this long (the HEAR "
                      "rules' longest: 20), in a fresh process each; 0: skip")
  p.add_argument("--json", action="store_true", help="also print one JSON line per encoder")
  a = p.parse_args(argv)
  from cola_tf.encoders import ENCODERS  # pylint: disable=import-outside-toplevel
  encoders = (a.encoders.split(",") if a.encoders
              else [name for name, entry in ENCODERS.items() if entry.benchmarked])
  unknown = sorted(set(encoders) - set(ENCODERS))
  if unknown:
    p.error(f"--encoders: unknown {unknown}; choose from {', '.join(ENCODERS)}")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from cola_tf.runtime import distribute  # pylint: disable=import-outside-toplevel
  distribute.initialise_devices_quietly()
  from cola_tf.benchmarks import input_pipeline  # pylint: disable=import-outside-toplevel
  print(f"machine: {input_pipeline.machine()}; load average {os.getloadavg()[0]:.2f}",
        flush=True)
  print(f"audio: {a.clips} x {a.seconds:g} s random noise per call; median of {a.repeats} "
        "calls; seconds of audio embedded per second (ref = each window through the whole "
        "frontend)\n", flush=True)
  print(f"{'encoder':16s} {'frontend':40s} {'scene':>7s} {'scene ref':>9s} {'timestamp':>9s} "
        f"{'ts ref':>7s} {'ts/scene':>8s} {'ts new/ref':>10s} {'scene new/ref':>13s} "
        f"{'scene fast':>10s} {'ts fast':>8s} {'ts fast/scene':>13s} {'ts fast/exact':>13s}",
        flush=True)
  results = []
  with tempfile.TemporaryDirectory() as folder:
    for encoder in encoders:
      r = run(encoder, a.seconds, a.clips, a.repeats, folder)
      results.append(r)
      print(f"{encoder:16s} {r['frontend']:40s} {r['scene']:7.1f} {r['scene_reference']:9.1f} "
            f"{r['timestamp']:9.1f} {r['timestamp_reference']:7.1f} "
            f"{r['timestamp_over_scene']:8.3f} {r['timestamp_new_over_reference']:10.2f} "
            f"{r['scene_new_over_reference']:13.2f} {r['scene_fast']:10.1f} "
            f"{r['timestamp_fast']:8.1f} {r['timestamp_fast_over_scene']:13.2f} "
            f"{r['timestamp_fast_over_exact']:13.2f}", flush=True)
    if a.memory_minutes > 0:
      _memory_table(results, folder, a.memory_minutes)
  print(f"\nload average at the end {os.getloadavg()[0]:.2f}", flush=True)
  if a.json:
    for r in results:
      print(json.dumps(r), flush=True)
  return results


if __name__ == "__main__":
  main()
