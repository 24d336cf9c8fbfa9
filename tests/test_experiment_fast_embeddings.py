"""experiments/fast_embeddings/run.py's parts that need no heareval run: the word-event task
it writes (hear-preprocess's layout, events where the words are) and its results table."""
import importlib.util
import json
import os

import numpy as np
import soundfile as sf

from cola_tf.hear import tasks as hear_tasks
from conftest import REPO, make_speech_commands_tree


def _experiment():
  path = os.path.join(REPO, "experiments", "fast_embeddings", "run.py")
  spec = importlib.util.spec_from_file_location("fast_embeddings_run", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_word_events_task_marks_where_the_words_are(tmp_path):
  run = _experiment()
  tree = str(tmp_path / "tree")
  make_speech_commands_tree(tree, num_words=6, num_speakers=8, espeak=False)
  task = run.write_word_events_task(tree, str(tmp_path / "tasks"),
                                    {"train": 6, "valid": 2, "test": 2})
  meta = hear_tasks.read_metadata(task)
  assert meta["embedding_type"] == "event" and meta["evaluation"][0] == "event_onset_200ms_fms"
  for split in ("train", "valid", "test"):
    with open(os.path.join(task, f"{split}.json")) as f:
      labels = json.load(f)
    for name, events in labels.items():
      audio, rate = sf.read(os.path.join(task, "16000", split, name))
      assert rate == 16000 and audio.size == 6 * 16000 and len(events) >= 2
      ends = [0.0]
      for event in events:  # in order, apart, inside the clip, on the speech
        assert event["label"] in run.TEN_WORDS and ends[-1] <= event["start"] < event["end"] <= 6000
        ends.append(event["end"])
        inside = audio[int(event["start"] * 16):int(event["end"] * 16)]
        assert np.sqrt(np.mean(inside ** 2)) > 5 * 0.003  # well above the noise floor


def test_results_table_pairs_modes_per_run(tmp_path):
  run = _experiment()
  rows = [{"run": f"seed{s}", "mode": mode, "task": "word_events",
           "metric": "event_onset_200ms_fms", "value": v, "embedding_s": t}
          for s, (e, f) in enumerate(((0.5, 0.45), (0.6, 0.5)))
          for mode, v, t in (("exact", e, 20.0), ("fast", f, 2.0))]
  run.write_results(rows, str(tmp_path))
  with open(tmp_path / "results.md") as f:
    table = f.read()
  assert "| word_events | event_onset_200ms_fms | seed0 | 0.5000 | 0.4500 | -0.0500 | 20.0 / 2.0 |" in table
  assert "| mean +- std (2 runs) | 0.5500 +- 0.0707 | 0.4750 +- 0.0354 | -0.0750 +- 0.0354 |" in table
