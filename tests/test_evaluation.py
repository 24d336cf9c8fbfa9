"""Online evaluation: kNN and linear scores with known answers, evaluation sets, the embedding
step on 1 and 2 replicas (same numbers, no Python op), eval.csv on resume."""
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from cola_tf import encoders
from cola_tf.probe import online as evaluation
from cola_tf import frontend as frontend_lib
from cola_tf.probe import eval_sets
from cola_tf.probe import knn
from cola_tf.probe.speech_commands import Split
from conftest import in_fresh_process


def clusters(num_classes, per_class, dim=16, seed=0, spread=0.05):
  """Well separated clusters: (features, labels)."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((num_classes, dim)) * 3
  labels = np.repeat(np.arange(num_classes), per_class)
  return (centres[labels] + spread * rng.standard_normal((len(labels), dim))).astype(
      np.float32), labels.astype(np.int32)


class FixedSet:
  """An evaluation set of named clips whose features the test gives directly."""

  def __init__(self, labels_by_split, classes):
    self.splits = {s: Split([f"{s}/{i}.wav" for i in range(len(y))], [classes[c] for c in y])
                   for s, y in labels_by_split.items()}
    self.classes = classes

  def describe(self):
    return "fixed"

  def tasks(self):
    return [eval_sets.LabelledTask("task", self.classes, self.splits)]


def score_fixed(features_by_split, labels_by_split, classes):
  ev = evaluation.OnlineEvaluation(eval_set=FixedSet(labels_by_split, classes), linear_epochs=20)
  ev.tasks = ev.eval_set.tasks()
  ev.paths = sorted(p for s in ev.tasks[0].splits.values() for p in s.files)
  features = np.zeros((len(ev.paths), next(iter(features_by_split.values())).shape[1]),
                      np.float32)
  row = {p: i for i, p in enumerate(ev.paths)}
  for split, x in features_by_split.items():
    for path, value in zip(ev.tasks[0].splits[split].files, x):
      features[row[path]] = value
  return ev.score(features, np.ones(len(ev.paths), bool))


def test_separable_clusters_score_one_and_shuffled_labels_score_chance():
  classes = ["a", "b", "c", "d"]
  x, y = clusters(4, 110, seed=0)  # one set of clusters, dealt out to the splits
  order = np.random.default_rng(1).permutation(len(y))
  x, y = x[order], y[order]
  data = {"train": (x[:240], y[:240]), "valid": (x[240:280], y[240:280]),
          "test": (x[280:], y[280:])}
  scores = score_fixed({s: d[0] for s, d in data.items()}, {s: d[1] for s, d in data.items()},
                       classes)
  assert scores[("task", "knn_top1")] == 1.0 and scores[("task", "linear_top1")] == 1.0
  shuffled = {s: np.random.default_rng(7 + i).permutation(d[1]) for i, (s, d) in
              enumerate(data.items())}
  chance = score_fixed({s: d[0] for s, d in data.items()}, shuffled, classes)
  for metric in ("knn_top1", "linear_top1"):
    assert 0.0 <= chance[("task", metric)] < 0.25 + 0.2, (metric, chance)


def test_knn_votes_are_similarity_weighted():
  """One very close neighbour of class 1 outweighs two far ones of class 0 at a low
  temperature, not at a high one (then the count wins)."""
  bank = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]], np.float32)
  labels = np.array([1, 0, 0])
  query = np.array([[1.0, 0.05]], np.float32)
  assert knn.knn_predict(bank, labels, query, 2, k=3, temperature=0.05)[0] == 1
  assert knn.knn_predict(bank, labels, query, 2, k=3, temperature=100.0)[0] == 0
  with pytest.raises(ValueError, match="k >= 1"):
    knn.knn_predict(bank, labels, query, 2, k=0)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
  return eval_sets.SyntheticEvalSet(identities_per_kind=3, clips_per_identity=5,
                                    cache_dir=str(tmp_path_factory.mktemp("eval_cache")))


def test_synthetic_set_tasks_and_splits(small_set):
  kind, identity = small_set.tasks()
  assert kind.classes == ["melody", "rhythm", "texture", "voice"]
  assert len(identity.classes) == 12
  for task in (kind, identity):
    assert sum(len(s) for s in task.splits.values()) == 4 * 3 * 5
  # kind: split by source (no source in two splits); identity: every source in every split.
  source = lambda p: os.path.basename(p).rsplit("_", 1)[0]  # noqa: E731
  by_split = {s: {source(p) for p in kind.splits[s].files} for s in ("train", "valid", "test")}
  assert not (by_split["train"] & by_split["test"] or by_split["valid"] & by_split["test"])
  assert {source(p) for p in identity.splits["test"].files} == set(identity.classes)


def _encoder(strategy):
  with strategy.scope():
    tf_keras.utils.set_random_seed(3)
    return encoders.small_cnn.small_cnn((100, 64), channels=(4, 8), pooling="mean")


@pytest.mark.slow  # a process of its own
def test_two_replicas_give_the_numbers_of_one_and_the_step_has_no_python(small_set, tmp_path):
  in_fresh_process("test_evaluation", "one_and_two_replicas", small_set.root, str(tmp_path))


def one_and_two_replicas(eval_root, out):
  """The embedding step on MirroredStrategy with 2 replicas equals 1 replica (batch 7:
  60 clips end in a padded batch), and its graph holds no Python op (TPU requirement)."""
  small_set = eval_sets.SyntheticEvalSet(identities_per_kind=3, clips_per_identity=5,
                                         cache_dir=os.path.dirname(eval_root))
  assert small_set.root == eval_root
  frontend = frontend_lib.LogMelFrontend()
  results = []
  for name, strategy in (("one", tf.distribute.get_strategy()),
                         ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    ev = evaluation.OnlineEvaluation(eval_set=small_set, batch_size=7, linear_epochs=5)
    ev.prepare(strategy, _encoder(strategy), frontend, 15360, os.path.join(out, name), True)
    features, decoded = ev.embed()
    assert decoded.all() and features.shape == (60, 8)
    results.append((features, ev.score(features, decoded)))
    concrete = ev._embed_step.get_concrete_function(next(iter(ev._dataset)))  # pylint: disable=protected-access
    ops = {n.op for n in concrete.graph.as_graph_def().node}
    for fn in concrete.graph.as_graph_def().library.function:
      ops |= {n.op for n in fn.node_def}
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}, ops
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
  assert results[0][1] == results[1][1]


def test_a_damaged_eval_csv_is_named_moved_aside_and_never_blocks_a_resume(tmp_path, capsys):
  """A line without commas (seen: a run could not resume, exit 2, 'invalid literal for
  int()', no file named): the file is named, moved aside, its readable rows kept."""
  model_dir = str(tmp_path)
  evaluation.write_csv(model_dir, [(0, "kind", "knn_top1", 0.5), (50, "kind", "knn_top1", 0.6)])
  path = os.path.join(model_dir, "eval.csv")
  with open(path, "a") as f:
    f.write("garbage without commas\n60,kind,knn_top1\n")
  rows = evaluation.read_csv(model_dir)
  assert rows == [(0, "kind", "knn_top1", 0.5), (50, "kind", "knn_top1", 0.6)]
  err = capsys.readouterr().err
  assert path in err and "line 4" in err and "eval.csv.damaged" in err
  with open(path + ".damaged") as f:
    assert "garbage" in f.read()
  assert evaluation.read_csv(model_dir) == rows  # rewritten whole: quiet from now on
  assert "damaged" not in capsys.readouterr().err
  ev = evaluation.OnlineEvaluation(eval_set=None)
  ev.model_dir = model_dir
  with open(path, "w") as f:
    f.write("not,the,header\n")
  assert not ev.resume_at(10) and evaluation.read_csv(model_dir) == []


def test_eval_csv_resumes_and_scores_reach_tensorboard(small_set, tmp_path):
  model_dir = str(tmp_path / "run")
  ev = evaluation.OnlineEvaluation(eval_set=small_set, linear_epochs=3)
  ev.prepare(tf.distribute.get_strategy(), _encoder(tf.distribute.get_strategy()),
             frontend_lib.LogMelFrontend(), 15360, model_dir, True)
  for step in (0, 50, 100):
    scores = ev(step)
  assert set(scores) == {(t, m) for t in ("kind", "identity")
                         for m in ("knn_top1", "linear_top1")}
  rows = evaluation.read_csv(model_dir)
  assert [r[0] for r in rows] == [0] * 4 + [50] * 4 + [100] * 4
  ev(50)  # scored again: replaces its rows
  assert [r[0] for r in evaluation.read_csv(model_dir)] == [0] * 4 + [100] * 4 + [50] * 4
  ev(100)
  with open(os.path.join(model_dir, "eval.csv")) as f:
    assert next(csv.reader(f)) == ["step", "task", "metric", "value"]
  ev(50)
  assert ev.resume_at(50) and [r[0] for r in evaluation.read_csv(model_dir)][-1] == 50
  assert not ev.resume_at(40) and [r[0] for r in evaluation.read_csv(model_dir)] == [0] * 4
  tags = set()
  for path in tf.io.gfile.glob(os.path.join(model_dir, "eval", "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  assert {"kind/knn_top1", "identity/linear_top1"} <= tags


def test_manifest_and_hear_task_sets(tmp_path):
  root = tmp_path / "m"
  root.mkdir()
  rows = ["files,label,split"] + [f"a{i}.wav,{'xy'[i % 2]},{s}" for i, s in enumerate(
      ["train"] * 4 + ["validation", "valid", "test", "test"])]
  (root / "m.csv").write_text("\n".join(rows) + "\n")
  (task,) = eval_sets.ManifestEvalSet(str(root / "m.csv")).tasks()
  assert task.classes == ["x", "y"] and len(task.splits["valid"]) == 2
  assert task.splits["train"].files[0] == str(root / "a0.wav")
  with pytest.raises(ValueError, match="ManifestEvalSet.manifest: .* is not a file"):
    eval_sets.ManifestEvalSet(str(root / "nope.csv")).tasks()
  (root / "bad.csv").write_text("files,label,split\na.wav,x,holdout\n")
  with pytest.raises(ValueError, match="holdout"):
    eval_sets.ManifestEvalSet(str(root / "bad.csv")).tasks()
  with pytest.raises(ValueError, match=r"m.csv: line 1: expected a header with the column\(s\) \[.word.\]"):
    eval_sets.ManifestEvalSet(str(root / "m.csv"), label_column="word").tasks()
  hear = tmp_path / "hear_task"
  for split, names in (("train", ["a", "b", "c"]), ("valid", ["d"]), ("test", ["e", "f"])):
    (hear / "16000" / split).mkdir(parents=True)
    (hear / f"{split}.json").write_text(json.dumps({f"{n}.wav": ["dog" if n in "ace" else "cat"]
                                                    for n in names}))
  (hear / "task_metadata.json").write_text(json.dumps(
      {"task_name": "pets", "embedding_type": "scene", "split_mode": "trainvaltest"}))
  (task,) = eval_sets.HearTaskEvalSet(str(hear)).tasks()
  assert task.name == "pets" and task.classes == ["cat", "dog"]
  assert task.splits["test"].files == [str(hear / "16000" / "test" / n) for n in ("e.wav", "f.wav")]
