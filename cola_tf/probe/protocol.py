"""The whole probe protocol: a task's splits embedded, a Dense layer fitted, the report."""
import dataclasses
import time

from cola_tf import SAMPLE_RATE
from cola_tf import files
from cola_tf import logs
from cola_tf.data import audio as audio_lib
from cola_tf.probe import embedders
from cola_tf.probe import fit
from cola_tf.probe import reports
from cola_tf.probe import speech_commands

log = logs.logger("linear_probe")
AUGMENTS = ("none", "crop")
ENCODER_MODES = ("inference", "training")


@dataclasses.dataclass
class ProbeTask:
  """What is probed: a Speech Commands v0.02 tree and the task on it."""
  data_root: str
  task: str = "keyword"       # keyword | speaker
  classes: int = 35           # keyword task: 35 words (the seed's protocol) or HEAR's 12
  clip_seconds: float = 1.0   # each clip centre-cropped / centre-padded to this
  min_speaker_clips: int = 10

  def description(self, num_classes):
    return self.task if self.task == "speaker" else f"keyword ({num_classes} classes)"


def _check(embedder, settings):
  """Every setting checked before any clip is embedded."""
  fit.check_settings(settings)
  if settings.augment not in AUGMENTS:
    raise ValueError(f"--augment must be one of {AUGMENTS}, got {settings.augment!r}")
  if settings.encoder_mode not in ENCODER_MODES:
    raise ValueError(f"--encoder_mode must be one of {ENCODER_MODES}, got "
                     f"{settings.encoder_mode!r}")
  needs_export = [f"--augment {settings.augment}"] if settings.augment != "none" else []
  if settings.encoder_mode != "inference":
    needs_export.append(f"--encoder_mode {settings.encoder_mode}")
  if needs_export and getattr(embedder, "window_samples", None) is None:
    raise ValueError(f"{' and '.join(needs_export)} needs an encoder export (--export), not "
                     "a baseline")
  if len(needs_export) > 1:
    raise ValueError("--augment crop and --encoder_mode training cannot be combined")
  if settings.encoder_mode == "training":
    embedder.check_training_mode()


class CropAugmentation:
  """Epoch features for `fit.fit_probe`: a random 0.96 s window of every train clip, each
  epoch; validation and test stay fixed."""

  def __init__(self, embedder, train_split, label_index, clip_samples, seed):
    self._args = (embedder, train_split, label_index, clip_samples)
    self._seed = seed

  def train(self, epoch):
    return embedders.embed_split(*self._args, crop_seed=self._seed * 100003 + epoch)

  def valid(self):
    return None

  def state(self):
    return None

  def test(self, state):  # pylint: disable=unused-argument
    return None


class TrainingModeEncoder:
  """Epoch features for `fit.fit_probe` as audax's linear probe computes them: its step
  applies the model with `train` left True and `mutable=['batch_stats']`, so every epoch the
  train clips are embedded with batch statistics and an active drop path (shuffled batches
  of the probe's batch size), which also moves the BatchNorm running statistics; validation
  (each epoch) and test (with the best epoch's statistics) run in inference mode with the
  statistics so updated. Encoders without BatchNorm or drop path (audax's ConvNeXt) give the
  same features as inference."""

  def __init__(self, embedder, splits, label_index, clip_samples, settings):
    self._embedder, self._splits = embedder, splits
    self._label_index, self._clip_samples = label_index, clip_samples
    self._batch, self._seed = settings.batch_size, settings.seed

  def _embed(self, split, training_batches=None):
    return embedders.embed_split(self._embedder, self._splits[split], self._label_index,
                                 self._clip_samples, training_batches=training_batches)

  def train(self, epoch):
    return self._embed("train", (self._batch, self._seed * 100003 + epoch))

  def valid(self):
    return self._embed("valid")

  def state(self):
    return self._embedder.encoder_state()

  def test(self, state):
    self._embedder.restore_encoder_state(state)
    return self._embed("test")


def run(embedder, task, settings=None, output=None, feature_cache=None, verbose=True):
  """Probes `embedder` on `task` (a ProbeTask) with `settings` (a fit.ProbeSettings, default
  the seed's); writes the report to `output` if given. `feature_cache` ({path: feature},
  filled here) lets several tasks over the same files share one embedding pass."""
  settings = settings or fit.ProbeSettings()
  _check(embedder, settings)
  class_names, splits = speech_commands.load_task(task.task, task.data_root, task.classes,
                                                  task.min_speaker_clips)
  label_index = {n: i for i, n in enumerate(class_names)}
  clip_samples = int(round(task.clip_seconds * SAMPLE_RATE))
  started = time.time()
  audio_lib.BAD_FILES.reset()
  features = {s: embedders.embed_split(embedder, splits[s], label_index, clip_samples,
                                       cache=feature_cache) for s in speech_commands.SPLITS}
  if verbose:
    log(f"embedded {sum(len(f[1]) for f in features.values())} clips with {embedder.name} "
        f"({features['train'][0].shape[1]}-d) in {time.time() - started:.1f} s; "
        f"{audio_lib.BAD_FILES.summary()}")
  epoch_features = None
  if settings.augment == "crop":
    epoch_features = CropAugmentation(embedder, splits["train"], label_index, clip_samples,
                                      settings.seed)
  elif settings.encoder_mode == "training":
    epoch_features = TrainingModeEncoder(embedder, splits, label_index, clip_samples, settings)
  result = fit.fit_probe(features, len(class_names), settings, epoch_features, verbose)
  result["description"] = {
      "task": task.description(len(class_names)), "embedder": embedder.name,
      "data": files.absolute(task.data_root),
      "clips": {s: int(len(features[s][1])) for s in speech_commands.SPLITS},
      **dataclasses.asdict(settings), "peak_learning_rate": settings.peak_learning_rate(),
      "clip_seconds": task.clip_seconds}
  if output:
    result["per_class_accuracy"] = reports.write_report(output, class_names, result,
                                                        result["description"])
  if verbose:
    log(f"{result['description']['task']}: test top-1 accuracy {result['test_accuracy']:.4f} "
        f"(best epoch {result['best_epoch']}, valid {result['valid_accuracy']:.4f}; "
        f"{len(class_names)} classes, chance {1 / len(class_names):.4f})"
        + (f"; report in {output}" if output else ""))
  return result
