"""The side-by-side training harness's own part (experiments/audax_trajectories), where
audax is absent: reading the trajectories both sides recorded (a fixture from a real run,
docs/audax_trajectories.md), finding where they part, and the report and figure."""
import os
import shutil
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "experiments", "audax_trajectories"))
import report  # noqa: E402
import trajectory  # noqa: E402

FIXTURE = os.path.join(HERE, "fixtures", "audax_trajectories")


def _read(name):
  return trajectory.read_csv(os.path.join(FIXTURE, name, "trajectory.csv"))


def test_report_states_the_recorded_runs_numbers(tmp_path):
  run = tmp_path / "run"
  shutil.copytree(FIXTURE, run)
  assert report.main(["--run", str(run), "--no_probes"]) == 0
  text = (run / "report.md").read_text()
  ours, audax = _read("ours"), _read("audax")
  last = len(ours["step"])
  assert f"| COLA loss, step {last} | {ours['loss'][-1]:.4f} | {audax['loss'][-1]:.4f} |" in text
  for column, between, yardstick, parting in trajectory.summary(ours, audax,
                                                                _read("ours_1thread")):
    assert (f"| {column} | {between:.2e} | {yardstick:.2e} | "
            f"{'-' if parting is None else parting} |") in text
  assert (run / "trajectories.png").stat().st_size > 20_000


def test_first_parting_is_the_step_a_difference_starts():
  ours, again = _read("ours"), _read("ours_1thread")
  yardstick = trajectory.differences(ours, again)
  parted = {k: v.copy() for k, v in ours.items()}
  parted["loss"][149:] += 0.05  # audax's trajectory, had it parted at step 150
  between = trajectory.differences(ours, parted)
  assert trajectory.first_parting(between, yardstick, "loss") == 150
  assert trajectory.first_parting(trajectory.differences(ours, ours), yardstick, "loss") is None


def test_a_damaged_trajectory_is_named(tmp_path):
  run = tmp_path / "run"
  shutil.copytree(FIXTURE, run)
  path = run / "audax" / "trajectory.csv"
  path.write_text("step,loss\n1,4.2\n")
  with pytest.raises(SystemExit, match=f"{path}: not a trajectory CSV"):
    report.main(["--run", str(run), "--no_probes"])


def test_trajectories_of_other_steps_are_refused():
  ours = _read("ours")
  shifted = {k: v.copy() for k, v in ours.items()}
  shifted["step"] = shifted["step"] + 1
  with pytest.raises(ValueError, match="same steps"):
    trajectory.differences(ours, shifted)
  assert np.all(trajectory.differences(ours, ours)["loss"] == 0)


def test_speed_ratio_is_taken_at_each_sides_best_setting():
  import speed  # pylint: disable=import-outside-toplevel
  rows = [{"side": "ours", "encoder": "convnext_atto", "setting": "float32", "pairs_per_s": 100.0},
          {"side": "ours", "encoder": "convnext_atto", "setting": "mixed_bfloat16",
           "pairs_per_s": 40.0},
          {"side": "audax", "encoder": "convnext_atto", "setting": "float32", "pairs_per_s": 10.0},
          {"side": "audax", "encoder": "convnext_atto", "setting": "bfloat16", "pairs_per_s": 20.0}]
  lines = speed.table(rows, 32, "a CPU")
  assert "| convnext_atto | 100.00 / 40.00 | 10.00 / 20.00 | 5.0x |" in lines
  assert "batch 32" in lines[0] and "a CPU" in lines[0]
