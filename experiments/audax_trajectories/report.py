r"""Overlays the side-by-side run's trajectories (ours, audax's, and ours at another thread
count: the float32-reordering yardstick), says where ours and audax's part, and probes the
encoders both sides ended with (and their common initialisation) with our linear probe.

  python experiments/audax_trajectories/report.py --run RUN \
      [--corpus runs/generated_speech/data/speech_commands] [--no_probes]

Reads RUN/{ours,audax,ours_1thread}/trajectory.csv (`--yardstick` names the third); writes
RUN/report.md and RUN/trajectories.png. Probes (with --corpus): audax's checkpoints go
through the importer (RUN/exports/audax_init, RUN/exports/audax_final) and ours through
its export; each probe's result is kept in RUN/probes and skipped when rerun.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import trajectory  # noqa: E402

PANELS = (("loss", "COLA loss"), ("contrastive_accuracy", "contrastive accuracy (in-batch)"),
          ("param_norm", "parameter L2 norm"))


def read_runs(run_dir, yardstick):
  """{'ours', 'audax', 'ours again'}: trajectories; one line naming a missing file."""
  out = {}
  for key, name in (("ours", "ours"), ("audax", "audax"), ("ours again", yardstick)):
    path = os.path.join(run_dir, name, "trajectory.csv")
    if not os.path.isfile(path):
      raise SystemExit(f"[report] {path}: missing (run {'audax_side.py' if key == 'audax' else 'ours_side.py'} first)")
    try:
      out[key] = trajectory.read_csv(path)
    except ValueError as e:
      raise SystemExit(f"[report] {e}") from None
  return out


def draw(runs, path):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(18, 4))
  styles = {"ours": dict(color="tab:blue", lw=1.5), "audax": dict(color="tab:red", lw=1,
                                                                  ls="--")}
  for ax, (column, title) in zip(axes, PANELS):
    for key, style in styles.items():
      ax.plot(runs[key]["step"], runs[key][column], label=key, **style)
    ax.set_title(title)
  between = trajectory.differences(runs["ours"], runs["audax"])
  yardstick = trajectory.differences(runs["ours"], runs["ours again"])
  ax = axes[-1]
  ax.semilogy(between["step"], np.maximum(between["loss"], 1e-9), color="tab:red",
              label="|loss| ours - audax")
  ax.semilogy(yardstick["step"], np.maximum(yardstick["loss"], 1e-9), color="tab:gray",
              label="|loss| ours - ours (other threads)")
  ax.set_title("loss difference per step")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def probe_exports(run_dir, corpus):
  """{(encoder, task): test top-1} of audax's initial and final encoders and ours, by the
  generated-speech experiment's probe (its settings and cache layout)."""
  from cola_tf.export import from_audax  # pylint: disable=import-outside-toplevel
  from cola_tf.export import metadata  # pylint: disable=import-outside-toplevel
  from cola_tf.probe import fit  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, os.path.join(HERE, "..", "generated_speech"))
  import run as generated_speech  # pylint: disable=import-outside-toplevel
  settings = trajectory.read_settings(run_dir)
  audax_dir = os.path.join(run_dir, "audax")
  exports = {"initialisation (both)": os.path.join(run_dir, "exports", "audax_init"),
             "audax's step": os.path.join(run_dir, "exports", "audax_final"),
             "ours": os.path.join(run_dir, "ours", "export")}
  for name, checkpoint in (("initialisation (both)", os.path.join(audax_dir, "checkpoint_0")),
                           ("audax's step", from_audax.checkpoint_file(audax_dir))):
    if not metadata.is_export(exports[name]):
      from_audax.write_export(checkpoint, settings["gin_files"], settings["gin_params"],
                              exports[name])
  return generated_speech.probe_all(run_dir, corpus, list(exports.items()),
                                    fit.ProbeSettings(**generated_speech.PROBE_SETTINGS))


def report_lines(runs, settings, probes):
  ours, audax = runs["ours"], runs["audax"]
  n = min(len(ours["step"]), len(audax["step"]))
  lines = [f"Side by side: {settings.get('encoder', '?')} (depths {settings.get('depths')}, "
           f"widths {settings.get('dims')}), batch {settings.get('global_batch_size')}, "
           f"{n} steps at peak rate {settings.get('peak_learning_rate')} (warmup "
           f"{settings.get('warmup_steps')} of {settings.get('total_steps')} steps), the same "
           "initial parameters and batches.", "",
           "| | ours | audax's step |", "|---|---|---|"]
  for column, title in PANELS:
    for at in sorted({1, n // 2, n}):
      lines.append(f"| {title}, step {at} | {ours[column][at - 1]:.4f} | "
                   f"{audax[column][at - 1]:.4f} |")
  lines += ["", "| | largest |ours - audax| | largest |ours - ours at other threads| | "
            "first step beyond 3x the yardstick |", "|---|---|---|---|"]
  for column, between, yardstick, parting in trajectory.summary(ours, audax,
                                                                runs["ours again"]):
    lines.append(f"| {column} | {between:.2e} | {yardstick:.2e} | "
                 f"{'-' if parting is None else parting} |")
  lines += ["", "(param_norm: relative. contrastive accuracy: one pair more or less in 64 is "
            "0.016.)"]
  if probes:
    lines += ["", "| encoder | keyword, linear probe | speaker, linear probe |", "|---|---|---|"]
    for name in dict.fromkeys(k[0] for k in probes):
      lines.append(f"| {name} | {probes.get((name, 'keyword'), float('nan')):.3f} | "
                   f"{probes.get((name, 'speaker'), float('nan')):.3f} |")
  return lines


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--run", required=True)
  p.add_argument("--yardstick", default="ours_1thread",
                 help="our second run (another thread count) inside --run")
  p.add_argument("--corpus", help="the Speech Commands-layout corpus the probes read")
  p.add_argument("--no_probes", action="store_true")
  a = p.parse_args(argv)
  if not a.no_probes and not a.corpus:
    p.error("--corpus (the probes' Speech Commands-layout folder) is needed, or --no_probes")
  runs = read_runs(a.run, a.yardstick)
  settings_path = os.path.join(a.run, trajectory.SETTINGS)
  settings = trajectory.read_settings(a.run) if os.path.isfile(settings_path) else {}
  probes = None if a.no_probes else probe_exports(a.run, a.corpus)
  draw(runs, os.path.join(a.run, "trajectories.png"))
  lines = report_lines(runs, settings, probes)
  with open(os.path.join(a.run, "report.md.tmp"), "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(os.path.join(a.run, "report.md.tmp"), os.path.join(a.run, "report.md"))
  print("\n".join(lines))
  print(f"\n{a.run}/report.md, {a.run}/trajectories.png")
  return 0


if __name__ == "__main__":
  sys.exit(main())
