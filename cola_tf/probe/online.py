"""Online evaluation during pretraining: kNN and linear-probe scores of the encoder as it
trains, every `every` steps, at the start and at the end.

The labelled set (`cola_tf.probe.eval_sets`) is embedded through the export's path: each
clip centre-cropped / centre-padded to `clip_seconds`, waveform normalisation and the
log-mel frontend in the input pipeline (no noise, no SpecAugment), the encoder in inference
mode with its pooling in the step. The step runs on the training strategy's replicas with
static shapes (every batch full: the last one padded, padding marked by index -1) and no
Python op, so it runs on TPU too; each input pipeline (worker) reads its share of the
clips, and the features are gathered to every worker, then scored on the chief with the
probe room's scorers: kNN top-1 (`probe.knn`: cosine, k nearest, exp(sim / T) votes; the
train split is the memory bank, test the queries) and a linear probe (`probe.fit`:
standardised features, a short fixed schedule, the best validation epoch, scored on test).

Scores go to the log, to TensorBoard (`model_dir/eval`, tags TASK/knn_top1 and
TASK/linear_top1) and to `model_dir/eval.csv` (step,task,metric,value), which a resumed run
continues (rows after the step it resumes from are dropped first).
"""
import csv
import dataclasses
import io
import math
import os
import time

import gin
import numpy as np
import tensorflow as tf

from cola_tf import SAMPLE_RATE
from cola_tf import files
from cola_tf import logs
from cola_tf.data import audio as audio_lib
from cola_tf.probe import embedders
from cola_tf.probe import eval_sets  # noqa: F401  (registers the sets gin configs name)
from cola_tf.probe import fit
from cola_tf.probe import knn
from cola_tf.probe.speech_commands import SPLITS

log = logs.logger("cola_tf")
EVAL_CSV = "eval.csv"
EVAL_COLUMNS = ("step", "task", "metric", "value")


@gin.configurable
class OnlineEvaluation:
  """Scores the training encoder on `eval_set`'s tasks every `every` steps (see module)."""

  def __init__(self, eval_set=gin.REQUIRED, every=1000, clip_seconds=1.0, knn_k=20,
               knn_temperature=0.07, max_clips=10000, batch_size=64, linear_epochs=30,
               linear_batch_size=64, linear_learning_rate=3e-3, seed=0):
    if every < 1 or max_clips < 1 or batch_size < 1:
      raise ValueError(f"OnlineEvaluation: every, max_clips and batch_size must be >= 1, got "
                       f"{every}, {max_clips}, {batch_size}")
    self.eval_set, self.every, self.seed = eval_set, int(every), int(seed)
    self.clip_samples = int(round(clip_seconds * SAMPLE_RATE))
    self.knn_k, self.knn_temperature = int(knn_k), float(knn_temperature)
    self.max_clips, self.batch_size = int(max_clips), int(batch_size)
    self.linear = fit.ProbeSettings(epochs=linear_epochs, batch_size=linear_batch_size,
                                    learning_rate=linear_learning_rate, reference_batch=0,
                                    warmup_epochs=0, weight_decay=1e-4, standardize=True,
                                    # Keras' default init: this short probe is ours, not the
                                    # seed's protocol (lecun_normal), and was tuned with it.
                                    seed=seed, kernel_initializer="glorot_uniform")
    self.seconds = 0.0

  def prepare(self, strategy, encoder, frontend, window_samples, model_dir, chief):
    """Reads the tasks, builds the distributed dataset and the embedding step."""
    self.tasks = subsample([t for t in self.eval_set.tasks()], self.max_clips, self.seed)
    self.paths = sorted({p for t in self.tasks for s in t.splits.values() for p in s.files})
    self.strategy, self.encoder, self.chief = strategy, encoder, chief
    self.model_dir = model_dir
    # Enough full global batches for any split of the clips over up to `replicas` input
    # pipelines (each pipeline needs ceil(ceil(N / P) / (batch * R / P)) <= (N + R) / (batch
    # * R) steps): every pipeline runs the same number of steps.
    replicas = strategy.num_replicas_in_sync
    self.steps = math.ceil((len(self.paths) + replicas) / (self.batch_size * replicas))
    self._dataset = strategy.distribute_datasets_from_function(
        lambda ctx: self._input(ctx, frontend, window_samples))
    self._embed_step = tf.function(self._step)
    self._writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval")) if chief else None
    names = ", ".join(f"{t.name} ({len(t.classes)} classes)" for t in self.tasks)
    log(f"online evaluation every {self.every} steps on {self.eval_set.describe()}: "
        f"{len(self.paths)} clips, tasks {names}")

  def _input(self, ctx, frontend, window_samples):
    """This input pipeline's share of the clips as full per-replica batches of model inputs
    (log-mel) and clip indices (-1: padding or a file that does not decode)."""
    per_replica = self.batch_size
    here = ctx.num_replicas_in_sync // ctx.num_input_pipelines
    total = self.steps * per_replica * here
    mine = len(range(ctx.input_pipeline_id, len(self.paths), ctx.num_input_pipelines))

    def features(path, index):
      contents = tf.io.read_file(path)
      fmt = tf.strings.lower(tf.strings.split(path, ".")[-1])
      waveform, ok = audio_lib.decode_or_flag(contents, path, fmt, SAMPLE_RATE)
      clip = embedders.fit_clip(waveform, self.clip_samples)
      log_mel = frontend(frontend.clip_input(clip[None], window_samples))[0]
      return log_mel, tf.where(ok, index, -1)

    ds = tf.data.Dataset.from_tensor_slices((self.paths, np.arange(len(self.paths), dtype=np.int32)))
    ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).map(
        features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    frames = frontend.num_frames(max(self.clip_samples, window_samples))
    pad = tf.data.Dataset.from_tensors((tf.zeros([frames, frontend.num_mel_bins]),
                                        tf.constant(-1, tf.int32))).repeat(total - mine)
    return ds.concatenate(pad).batch(per_replica, drop_remainder=True).prefetch(2)

  def _step(self, batch):
    """Features and indices of one global batch, gathered from every replica."""
    def replica(log_mel, index):
      return tf.cast(self.encoder(log_mel, training=False), tf.float32), index

    features, index = self.strategy.run(replica, args=batch)
    return (self.strategy.gather(features, axis=0), self.strategy.gather(index, axis=0))

  def embed(self):
    """(features [clips, D] float32, decoded [clips] bool), in `self.paths` order."""
    out, seen = None, np.zeros(len(self.paths), bool)
    iterator = iter(self._dataset)
    for _ in range(self.steps):
      features, index = (t.numpy() for t in self._embed_step(next(iterator)))
      if out is None:
        out = np.zeros((len(self.paths), features.shape[-1]), np.float32)
      keep = index >= 0
      out[index[keep]] = features[keep]
      seen[index[keep]] = True
    return out, seen

  def __call__(self, step):
    """Embeds (every worker), scores and records (the chief): {(task, metric): value}."""
    started = time.time()
    features, decoded = self.embed()
    scores = self.score(features, decoded) if self.chief else {}
    took = time.time() - started
    self.seconds += took
    if self.chief:
      self._record(step, scores)
      log(f"eval at step {step} ({took:.1f} s): " + " | ".join(
          f"{task} kNN {scores[(task, 'knn_top1')]:.3f} linear "
          f"{scores[(task, 'linear_top1')]:.3f}" for task in [t.name for t in self.tasks]))
    return scores

  def score(self, features, decoded):
    """{(task, 'knn_top1' | 'linear_top1'): test top-1}."""
    row = {p: i for i, p in enumerate(self.paths)}
    scores = {}
    for task in self.tasks:
      index = {c: i for i, c in enumerate(task.classes)}
      data = {}
      for split in SPLITS:
        rows = [(row[p], index[l]) for p, l in zip(task.splits[split].files,
                                                   task.splits[split].labels) if decoded[row[p]]]
        if not rows:
          raise ValueError(f"online evaluation: task {task.name!r} has no decodable "
                           f"{split} clip")
        data[split] = (features[[r for r, _ in rows]], np.array([y for _, y in rows], np.int32))
      scores[(task.name, "knn_top1")] = knn.knn_top1(data["train"], data["test"],
                                                     len(task.classes), self.knn_k,
                                                     self.knn_temperature)
      settings = dataclasses.replace(self.linear, batch_size=min(self.linear.batch_size,
                                                                 len(data["train"][1])))
      scores[(task.name, "linear_top1")] = fit.fit_probe(data, len(task.classes), settings,
                                                         verbose=False)["test_accuracy"]
    return scores

  def _record(self, step, scores):
    with self._writer.as_default(step=step):
      for (task, metric), value in scores.items():
        tf.summary.scalar(f"{task}/{metric}", value)
    self._writer.flush()
    # A step scored again (a run restarted from scratch) replaces its earlier rows.
    rows = [r for r in read_csv(self.model_dir) if r[0] != step]
    write_csv(self.model_dir, rows + [(step, t, m, v) for (t, m), v in scores.items()])

  def resume_at(self, step):
    """Drops rows of eval.csv after `step` (scores of a run killed past its last
    checkpoint); returns whether `step` itself was already scored."""
    rows = read_csv(self.model_dir)
    kept = [r for r in rows if r[0] <= step]
    if len(kept) != len(rows):
      write_csv(self.model_dir, kept)
    return any(r[0] == step for r in kept)


def read_csv(model_dir):
  """[(step, task, metric, value)] of model_dir/eval.csv ([] if none).

  An evaluation log never blocks training: a damaged file (a line that is not
  step,task,metric,value) is named in one line and moved aside to eval.csv.damaged, and its
  readable rows are kept."""
  path = os.path.join(model_dir, EVAL_CSV)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    lines = f.read().splitlines()
  rows, damaged = [], []
  for number, row in enumerate(csv.reader(lines[1:]), start=2):
    try:
      step, task, metric, value = row
      rows.append((int(step), task, metric, float(value)))
    except ValueError:
      damaged.append(number)
  if damaged or (lines and lines[0].split(",") != list(EVAL_COLUMNS)):
    aside = path + ".damaged"
    tf.io.gfile.rename(path, aside, overwrite=True)
    logs.log(f"note: {path} is damaged (line {damaged[0] if damaged else 1} is not "
             f"{','.join(EVAL_COLUMNS)}): moved to {aside}; kept its {len(rows)} readable "
             "rows", error=True)
    write_csv(model_dir, rows)
  return rows


def write_csv(model_dir, rows):
  text = io.StringIO()
  writer = csv.writer(text, lineterminator="\n")
  writer.writerow(EVAL_COLUMNS)
  writer.writerows((s, t, m, f"{v:.6f}") for s, t, m, v in rows)
  files.atomic_write(os.path.join(model_dir, EVAL_CSV), text.getvalue())


def subsample(tasks, max_clips, seed):
  """Tasks whose clips (over all tasks, each file once) number at most `max_clips`: every
  split keeps the same fixed random fraction of its clips, with a line saying so."""
  paths = sorted({p for t in tasks for s in t.splits.values() for p in s.files})
  if len(paths) <= max_clips:
    return tasks
  rng = np.random.default_rng(seed)
  keep = set(rng.choice(paths, size=max_clips, replace=False).tolist())
  log(f"online evaluation: {len(paths)} clips > OnlineEvaluation.max_clips = {max_clips}: "
      f"using a fixed random {max_clips} (seed {seed})")
  for task in tasks:
    for split in task.splits.values():
      pairs = [(p, l) for p, l in zip(split.files, split.labels) if p in keep]
      split.files, split.labels = [p for p, _ in pairs], [l for _, l in pairs]
  return [t.check("online evaluation after subsampling") for t in tasks]


class EvaluateEvery:
  """Controller action, before the progress line: runs `evaluation` every `every` steps
  and at `total_steps`, and hands the scores to the progress line."""

  def __init__(self, evaluation, step_counter, total_steps, progress):
    self.evaluation, self.step_counter = evaluation, step_counter
    self.total_steps, self.progress = total_steps, progress

  def __call__(self, output):  # pylint: disable=unused-argument
    step = int(self.step_counter.numpy())
    if step % self.evaluation.every == 0 or step >= self.total_steps:
      scores = self.evaluation(step)
      self.progress.note = " | eval " + " ".join(
          f"{t} {scores[(t, 'knn_top1')]:.2f}/{scores[(t, 'linear_top1')]:.2f}"
          for t in dict.fromkeys(t for t, _ in scores)) if scores else ""
