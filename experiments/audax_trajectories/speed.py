r"""Step speed against audax's own implementation: its jitted COLA train step (JAX, through
`audax_speed.py` in the scratch environment) and ours (`cola_tf.benchmarks.train_step`), the
same encoders, batch and input size, each side at each of its precision settings, one
process per measurement, one after the other (run it on an otherwise idle machine).

  python experiments/audax_trajectories/speed.py --audax_python scratch/bin/python \
      --audax_src /path/to/patched/audax [--encoders convnext_atto,convnext_tiny,efficientnet_b0]
      [--batch 32] [--out speed.json]

Prints a table: pairs/s of each setting, each side's best, and ours / audax's at the best
settings, under a line naming the CPU and each side's device (on a machine with a GPU and
jax's CUDA wheel in the scratch environment, both sides run on the GPU). XLA stays off on our side (measured
~5x slower on CPU, docs/benchmarks.md); JAX always compiles with XLA.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ENCODERS = ("convnext_atto", "convnext_tiny", "efficientnet_b0")
OURS = ("float32", "mixed_bfloat16")
AUDAX = ("float32", "bfloat16")


def tf_device():
  """Where our step runs: the GPU TensorFlow sees (then the comparison is on it), else 'CPU'."""
  from cola_tf.runtime import distribute  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel  (after cola_tf: its log level)
  distribute.initialise_devices_quietly()  # no "failed call to cuInit" on a CPU machine
  gpus = tf.config.list_physical_devices("GPU")
  return f"GPU ({gpus[0].name})" if gpus else "CPU"


def _json_line(args, env=None):
  done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
  lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
  if done.returncode or not lines:
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    raise SystemExit(f"[speed] {' '.join(args[:4])} ... failed (exit {done.returncode}): "
                     + " | ".join(tail))
  return json.loads(lines[-1])


def measure(a):
  rows = []
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [a.audax_src, os.path.join(a.audax_src, "recipes", "cola")])}
  for encoder in a.encoders.split(","):
    for precision in OURS:
      row = _json_line([sys.executable, "-m", "cola_tf.benchmarks.train_step", "--encoder",
                        encoder, "--batch", str(a.batch), "--precision", precision, "--steps",
                        str(a.steps), "--repeats", str(a.repeats), "--json"])
      rows.append({"side": "ours", "encoder": encoder, "setting": precision,
                   "pairs_per_s": row["train_pairs_per_s"]})
      print(f"ours  {encoder:16s} {precision:15s} {rows[-1]['pairs_per_s']:8.2f} pairs/s",
            flush=True)
    for dtype in AUDAX:
      row = _json_line([a.audax_python, os.path.join(HERE, "audax_speed.py"), "--encoder",
                        encoder, "--batch", str(a.batch), "--dtype", dtype, "--steps",
                        str(a.steps), "--repeats", str(a.repeats)], env)
      rows.append({"side": "audax", "encoder": encoder, "setting": dtype,
                   "pairs_per_s": row["pairs_per_s"], "device": row["device"],
                   "compile_s": row["compile_and_first_step_s"]})
      print(f"audax {encoder:16s} {dtype:15s} {rows[-1]['pairs_per_s']:8.2f} pairs/s "
            f"(compile + first step {row['compile_and_first_step_s']:.0f} s)", flush=True)
  return rows


def table(rows, batch, device):
  lines = [f"Train-step speed, batch {batch} pairs of 100x64 log-mel, {device}:", "",
           "| encoder | ours: float32 / mixed_bfloat16 (pairs/s) | audax: float32 / bfloat16 "
           "(pairs/s) | ours / audax, best settings |", "|---|---|---|---|"]
  for encoder in dict.fromkeys(r["encoder"] for r in rows):
    side = {s: {r["setting"]: r["pairs_per_s"] for r in rows
                if r["encoder"] == encoder and r["side"] == s} for s in ("ours", "audax")}
    best = {s: max(v.values()) for s, v in side.items()}
    lines.append(f"| {encoder} | " + " | ".join(
        " / ".join(f"{v:.2f}" for v in side[s].values()) for s in ("ours", "audax"))
                 + f" | {best['ours'] / best['audax']:.1f}x |")
  return lines


def main():
  from cola_tf import logs  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--audax_python", required=True, help="the scratch environment's python")
  p.add_argument("--audax_src", required=True, help="the patched audax checkout")
  p.add_argument("--encoders", default=",".join(ENCODERS))
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", help="also write the rows as JSON here")
  a = p.parse_args()
  rows = measure(a)
  audax_devices = sorted({r["device"] for r in rows if r["side"] == "audax"})
  from cola_tf.benchmarks import input_pipeline  # pylint: disable=import-outside-toplevel
  device = (f"{input_pipeline.cpu()}; ours on {tf_device()}, audax on jax device "
            f"{', '.join(audax_devices)}")
  lines = table(rows, a.batch, device)
  print("\n".join(lines))
  if a.out:
    with open(a.out, "w") as f:
      json.dump({"device": device, "batch": a.batch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
