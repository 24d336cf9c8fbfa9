r"""HEAR embedding throughput of exported encoders: seconds of audio embedded per second.

  python -m cola_tf.benchmarks.hear_embeddings [--seconds 1,2,4,20] [--clips 1] [--repeats 30]
      [--encoders small_cnn,efficientnet_b0,convnext_tiny] [--memory_minutes 20] [--json]

Exports each encoder (its shipped gin config, random initialisation: throughput does not depend on
the weights) with `cola_tf.export.frozen_encoder.export`, loads the SavedModel with TensorFlow alone and
times, on the same random audio in the same process, scene embeddings, timestamp embeddings
(one STFT per clip, the export's `timestamp_embeddings`), and the per-window references
(`timestamp_embeddings_reference`, `scene_embeddings_reference`: each window's waveform
through the whole frontend), and the fast mode's (`hear_module.load_model(..., fast=True)`:
one encoder pass per clip, `*_embeddings_fast`), for each clip length in --seconds. Each
figure is the median of --repeats timed calls after one warm-up call; the calls are made in
rounds (each function once per round) and each ratio is the median over rounds of the
round's own ratio, printed with its quartiles for fast timestamps / scene.
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


def time_rounds(fns, audio, repeats):
  """{name: [seconds of each call]}: one warm-up call each, then `repeats` rounds that call
  every function once in turn. Interleaving puts each round's calls under the same load, so
  a ratio taken round by round (`paired_ratio`) does not move with the load of a shared
  machine the way a ratio of two separately timed medians does (calls of a few ms)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  def call(fn):
    out = fn(audio)
    out = out[0] if isinstance(out, (tuple, list)) else out
    float(tf.reduce_sum(out))  # wait for the result
  for fn in fns.values():
    call(fn)
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      started = time.perf_counter()
      call(fn)
      times[name].append(time.perf_counter() - started)
  return times


def paired_ratio(times, faster, slower):
  """(median, lower quartile, upper quartile) over rounds of the speed of `faster` over
  `slower` (its time over faster's in the same round)."""
  ratios = sorted(s / f for f, s in zip(times[faster], times[slower]))
  if len(ratios) < 2:
    return (ratios[0],) * 3
  low, mid, high = statistics.quantiles(ratios, n=4)
  return mid, low, high


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


def run(encoder, lengths, clips, repeats, folder):
  """One result per clip length in `lengths` (seconds) for a random-init export of `encoder`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  started = time.perf_counter()
  path = export_random_init(encoder, folder)
  export_s = time.perf_counter() - started
  saved = tf.saved_model.load(path)
  frontend = export_metadata.read(path)["frontend"]
  about = {"encoder": encoder, "export_s": export_s,
           "frontend": f"{frontend['waveform_normalization']}, {frontend['padding']}, "
                       f"{frontend['normalization']}"}
  return [{**about, "seconds": seconds, **measure(saved, seconds, clips, repeats)}
          for seconds in lengths]


def measure(saved, seconds, clips, repeats):
  """Rates (seconds of audio per second) and ratios of the export's embedding functions on
  `clips` random clips of `seconds`."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  audio = tf.constant(np.random.default_rng(0).uniform(
      -0.5, 0.5, (clips, int(seconds * SAMPLE_RATE))).astype(np.float32))
  audio_s = clips * seconds
  times = time_rounds({"scene": saved.scene_embeddings,
                       "scene_reference": saved.scene_embeddings_reference,
                       "timestamp": saved.timestamp_embeddings,
                       "timestamp_reference": saved.timestamp_embeddings_reference,
                       "scene_fast": saved.scene_embeddings_fast,
                       "timestamp_fast": saved.timestamp_embeddings_fast}, audio, repeats)
  rates = {name: audio_s / statistics.median(t) for name, t in times.items()}
  fast_over_scene = paired_ratio(times, "timestamp_fast", "scene")
  return {**rates,
          "timestamp_over_scene": paired_ratio(times, "timestamp", "scene")[0],
          "timestamp_new_over_reference":
              paired_ratio(times, "timestamp", "timestamp_reference")[0],
          "scene_new_over_reference": paired_ratio(times, "scene", "scene_reference")[0],
          "timestamp_fast_over_scene": fast_over_scene[0],
          "timestamp_fast_over_scene_quartiles": fast_over_scene[1:],
          "timestamp_fast_over_exact": paired_ratio(times, "timestamp_fast", "timestamp")[0]}


def _memory_table(results, folder, minutes):
  print(f"\npeak resident memory embedding one {minutes:g}-minute clip through hear_module "
        "(fresh process each; MiB):", flush=True)
  print(f"{'encoder':16s} {'embeddings':14s} {'loaded':>8s} {'peak':>8s} {'peak - loaded':>13s} "
        f"{'output':>8s} {'wall s':>7s}", flush=True)
  for r in {r["encoder"]: r for r in results}.values():  # one per encoder
    path = os.path.join(folder, r["encoder"], "export")
    for kind in ("scene", "timestamp", "scene fast", "timestamp fast"):
      started = time.perf_counter()
      m = peak_memory(path, kind, minutes)
      m["wall_s"] = time.perf_counter() - started
      r[f"{kind.replace(' ', '_')}_memory_{minutes:g}min"] = m
      print(f"{r['encoder']:16s} {kind:14s} {m['loaded_mib']:8.0f} {m['peak_mib']:8.0f} "
            f"{m['peak_mib'] - m['loaded_mib']:13.0f} {m['output_mib']:8.1f} "
            f"{m['wall_s']:7.1f}", flush=True)


_HEADER = (f"{'encoder':16s} {'frontend':40s} {'clip s':>6s} {'scene':>7s} {'scene ref':>9s} "
           f"{'timestamp':>9s} {'ts ref':>7s} {'ts/scene':>8s} {'ts new/ref':>10s} "
           f"{'scene new/ref':>13s} {'scene fast':>10s} {'ts fast':>8s} {'ts fast/scene':>13s} "
           f"{'quartiles':>11s} {'ts fast/exact':>13s}")


def _row(r):
  low, high = r["timestamp_fast_over_scene_quartiles"]
  return (f"{r['encoder']:16s} {r['frontend']:40s} {r['seconds']:6g} {r['scene']:7.1f} "
          f"{r['scene_reference']:9.1f} {r['timestamp']:9.1f} {r['timestamp_reference']:7.1f} "
          f"{r['timestamp_over_scene']:8.3f} {r['timestamp_new_over_reference']:10.2f} "
          f"{r['scene_new_over_reference']:13.2f} {r['scene_fast']:10.1f} "
          f"{r['timestamp_fast']:8.1f} {r['timestamp_fast_over_scene']:13.2f} "
          f"{f'[{low:.2f}, {high:.2f}]':>11s} {r['timestamp_fast_over_exact']:13.2f}")


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--seconds", default="1,2,4,20",
                 help="comma-separated clip lengths (s), one row each")
  p.add_argument("--clips", type=int, default=1, help="clips per call")
  p.add_argument("--repeats", type=int, default=30, help="timed rounds per clip length")
  p.add_argument("--encoders", default=None,
                 help="comma-separated registered encoders (cola_tf.encoders.ENCODERS; "
                      "default: those the registry marks benchmarked)")
  p.add_argument("--memory_minutes", type=float, default=20.0,
                 help="also measure peak memory embedding one clip this long (the HEAR "
                      "rules' longest: 20), in a fresh process each; 0: skip")
  p.add_argument("--json", action="store_true", help="also print one JSON line per encoder")
  a = p.parse_args(argv)
  try:
    lengths = [float(s) for s in a.seconds.split(",")]
  except ValueError:
    p.error(f"--seconds: expected comma-separated numbers, got {a.seconds!r}")
  if not lengths or min(lengths) <= 0:
    p.error(f"--seconds: expected clip lengths above 0, got {a.seconds!r}")
  if a.repeats < 1 or a.clips < 1:
    p.error(f"--repeats and --clips: expected at least 1, got {a.repeats} and {a.clips}")
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
  print(f"audio: {a.clips} clip(s) of random noise per call; median of {a.repeats} rounds; "
        "seconds of audio embedded per second (ref = each window through the whole "
        "frontend); ratios: median over rounds (fast/scene: [quartiles])\n", flush=True)
  print(_HEADER, flush=True)
  results = []
  with tempfile.TemporaryDirectory() as folder:
    for encoder in encoders:
      for r in run(encoder, lengths, a.clips, a.repeats, folder):
        results.append(r)
        print(_row(r), flush=True)
    if a.memory_minutes > 0:
      _memory_table(results, folder, a.memory_minutes)
  print(f"\nload average at the end {os.getloadavg()[0]:.2f}", flush=True)
  if a.json:
    for r in results:
      print(json.dumps(r), flush=True)
  return results


if __name__ == "__main__":
  main()
