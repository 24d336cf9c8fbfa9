"""What both sides of the side-by-side run share (numpy only: imported by audax's side in the
scratch environment too): the run folder's settings and recorded batches, the trajectory
CSV, and the comparison of two trajectories."""
import csv
import json
import os
import time

import numpy as np

COLUMNS = ("step", "loss", "contrastive_accuracy", "learning_rate", "param_norm",
           "encoder_norm", "head_norm", "seconds")
SETTINGS = "settings.json"
ANCHORS, POSITIVES = "anchors.npy", "positives.npy"


def read_settings(run_dir):
  with open(os.path.join(run_dir, SETTINGS)) as f:
    return json.load(f)


class Batches:
  """The recorded training batches: batches[i] = (anchors, positives), [pairs, frames, mels]
  float32, memory-mapped (200 steps of 64 pairs are 650 MB)."""

  def __init__(self, run_dir):
    self.anchors = np.load(os.path.join(run_dir, ANCHORS), mmap_mode="r")
    self.positives = np.load(os.path.join(run_dir, POSITIVES), mmap_mode="r")

  def __len__(self):
    return len(self.anchors)

  def __getitem__(self, step):
    return np.array(self.anchors[step]), np.array(self.positives[step])


def write_csv(path, rows):
  """Rewrites the whole trajectory atomically (a run stopped mid-write leaves the last one)."""
  with open(path + ".tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
  os.replace(path + ".tmp", path)


def record_step(out_dir, rows, row, side, steps, started, every=25):
  """Appends one step's row, rewrites out_dir/trajectory.csv, prints progress now and then."""
  rows.append({**row, "seconds": time.time() - started})
  write_csv(os.path.join(out_dir, "trajectory.csv"), rows)
  if row["step"] == 1 or row["step"] % every == 0:
    print(f"{side} step {row['step']}/{steps}: loss {row['loss']:.4f} "
          f"acc {row['contrastive_accuracy']:.3f} ({rows[-1]['seconds']:.0f} s)", flush=True)


def read_csv(path):
  """{column: float array} of a trajectory CSV; one line naming the file when it is not one."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f"{path}: not a trajectory CSV (missing columns {missing})")
    rows = list(reader)
  try:
    return {c: np.asarray([float(r[c]) for r in rows]) for c in COLUMNS}
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: line {len(rows)}: {e}") from None


def differences(ours, theirs, columns=("loss", "contrastive_accuracy", "param_norm")):
  """{column: |ours - theirs| per step} over the steps both ran (relative for the norms)."""
  n = min(len(ours["step"]), len(theirs["step"]))
  if n == 0 or not np.array_equal(ours["step"][:n], theirs["step"][:n]):
    raise ValueError("the trajectories do not cover the same steps")
  out = {"step": ours["step"][:n]}
  for c in columns:
    diff = np.abs(ours[c][:n] - theirs[c][:n])
    out[c] = diff / np.abs(theirs[c][:n]) if c.endswith("norm") else diff
  return out


def first_parting(between, yardstick, column, factor=3.0, floor=1e-6):
  """The first step where ours and audax's differ in `column` by more than `factor` times
  what float32 reordering alone gives by then (`yardstick`: our run against our run at
  another thread count; its running maximum, at least `floor`), or None."""
  n = min(len(between["step"]), len(yardstick["step"]))
  band = np.maximum(np.maximum.accumulate(yardstick[column][:n]), floor)
  above = np.nonzero(between[column][:n] > factor * band)[0]
  return int(between["step"][above[0]]) if above.size else None


def summary(ours, theirs, ours_again):
  """Rows (column, largest ours-vs-audax difference, largest ours-vs-ours difference,
  first step where the first exceeds 3x the second or None) for the report."""
  between, yardstick = differences(ours, theirs), differences(ours, ours_again)
  return [(c, float(between[c].max()), float(yardstick[c].max()),
           first_parting(between, yardstick, c)) for c in ("loss", "param_norm")] + [
      ("contrastive_accuracy", float(between["contrastive_accuracy"].max()),
       float(yardstick["contrastive_accuracy"].max()), None)]
