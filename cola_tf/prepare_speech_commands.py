r"""Writes a Speech Commands v0.02 tree as a HEAR task directory (hear-preprocess format).

  python -m cola_tf.prepare_speech_commands --src RAW_V002_DIR --dst TASKS_DIR \
      [--classes 12|35] [--probe linear|default] [--probe_grid JSON]

Output: TASKS_DIR/speech_commands-v0.0.2-full/ (12 classes, HEAR's task) or
TASKS_DIR/speech_commands_35-v0.0.2-full/ (35 classes, the COLA / audax protocol) with
task_metadata.json, labelvocabulary.csv (idx,label), train.json / valid.json / test.json
({file: [label]}) and 16000/{train,valid,test}/*.wav: mono 16-bit 16 kHz clips padded or
trimmed to exactly 1 s. Splits follow validation_list.txt and testing_list.txt (train = the
rest). 12 classes = the ten words yes no up down left right on off stop go, `_unknown_` for
every other word, and `_silence_`: 1 s cuts of `_background_noise_`, about one twelfth of each
split, the noise files dealt out to the splits in turn so no recording spans two splits.
`--probe linear` (default) asks heareval for a linear probe (0 hidden layers) through
evaluation_params.task_specific_param_grid; `--probe default` leaves heareval's grid.
`--probe_grid '{"max_epochs": [100], "batch_size": [64]}'` adds more of heareval's
hyperparameters to that grid (its "faster" grid, 10 epochs at batch 1024 with patience 1-3,
barely trains on a small corpus).
"""
import argparse
import json
import sys

from cola_tf import logs
from cola_tf.hear import tasks as hear_tasks


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--src", required=True, help="Speech Commands v0.02 root")
  p.add_argument("--dst", required=True, help="HEAR tasks directory to write into")
  p.add_argument("--classes", type=int, default=12, choices=[12, 35])
  p.add_argument("--probe", default="linear", choices=["linear", "default"])
  p.add_argument("--probe_grid", default="{}",
                 help="JSON object of heareval hyperparameter lists added to the task's grid")
  a = p.parse_args(argv)
  try:
    try:
      grid = json.loads(a.probe_grid)
    except json.JSONDecodeError as e:
      raise ValueError(f"--probe_grid is not JSON: {e}") from None
    if not isinstance(grid, dict):
      raise ValueError(f"--probe_grid must be a JSON object, got {a.probe_grid!r}")
    task_dir, counts, vocabulary = hear_tasks.write_speech_commands_task(
        a.src, a.dst, a.classes, a.probe, grid)
  except ValueError as e:
    logs.log(f"error: {e}", "prepare_speech_commands", error=True)
    return 2
  logs.log(f"wrote {task_dir}: {counts} clips, {len(vocabulary)} labels")
  return 0


if __name__ == "__main__":
  sys.exit(main())
