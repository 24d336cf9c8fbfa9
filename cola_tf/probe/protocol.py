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
  if settings.augment not in AUGMENTS:
    raise ValueError(f"--augment must be one of {AUGMENTS}, got {settings.augment!r}")
  if settings.augment == "crop" and getattr(embedder, "window_samples", None) is None:
    raise ValueError("--augment crop needs an encoder export (--export), not a baseline")


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
  fresh = None
  if settings.augment == "crop":
    def fresh(epoch):
      return embedders.embed_split(embedder, splits["train"], label_index, clip_samples,
                                   crop_seed=settings.seed * 100003 + epoch)
  result = fit.fit_probe(features, len(class_names), settings, fresh, verbose)
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
