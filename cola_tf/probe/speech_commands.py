"""Speech Commands probe tasks: keyword spotting (35 words, or HEAR's 12) and speaker
identification, as {split: Split} over a v0.02 tree (local or any tf.io.gfile path)."""
import collections
import dataclasses
import hashlib
import os

import soundfile as sf
import tensorflow as tf

from cola_tf import SAMPLE_RATE

from cola_tf.data import sources

TASKS = ("keyword", "speaker")
SPLITS = ("train", "valid", "test")
# HEAR's 12-class task: these ten words, `_unknown_` for the others, `_silence_`.
TEN_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


@dataclasses.dataclass
class Split:
  """Clips of one split: audio files and, optionally, clips already in memory."""
  files: list
  labels: list
  arrays: list = dataclasses.field(default_factory=list)  # [(waveform, label)]

  def __len__(self):
    return len(self.files) + len(self.arrays)


def keyword_task(root, classes=35):
  """(class names, {split: Split}) for Speech Commands keyword spotting."""
  if classes not in (12, 35):
    raise ValueError(f"--classes must be 12 or 35, got {classes}")
  splits = {}
  for split, sc_split in zip(SPLITS, ("train", "validation", "test")):
    source = sources.SpeechCommandsSource(root, sc_split)
    words = source.labels()
    if classes == 12:
      words = [w if w in TEN_WORDS else "_unknown_" for w in words]
    splits[split] = Split(list(source.files()), list(words))
  if classes == 12:
    wanted = {s: max(1, len(splits[s]) // 11) for s in SPLITS}
    for split, cuts in silence_cuts(root, wanted).items():
      splits[split].arrays = [(cut, "_silence_") for _, cut in cuts]
  names = sorted({l for s in splits.values() for l in s.labels + [a[1] for a in s.arrays]})
  return names, splits


def speaker_of(path):
  return os.path.basename(path).split("_nohash_")[0]


def split_of_clip(path, fractions=(0.8, 0.1)):
  """train / valid / test by a stable hash of the clip's word/file name."""
  rel = "/".join(path.replace(os.sep, "/").split("/")[-2:])
  u = int(hashlib.sha1(rel.encode()).hexdigest()[:8], 16) / 16 ** 8
  return "train" if u < fractions[0] else "valid" if u < sum(fractions) else "test"


def speaker_task(root, min_clips=10):
  """(speaker names, {split: Split}): speaker identification over every word folder."""
  source = sources.SpeechCommandsSource(root, "all")
  by_speaker = collections.defaultdict(list)
  for path in source.files():
    by_speaker[speaker_of(path)].append(path)
  speakers = sorted(s for s, files in by_speaker.items() if len(files) >= min_clips)
  if len(speakers) < 2:
    raise ValueError(f"--data {root!r}: the speaker task needs 2+ speakers with "
                     f">= {min_clips} clips (--min_speaker_clips), found {len(speakers)}")
  splits = {s: Split([], []) for s in SPLITS}
  for speaker in speakers:
    for path in by_speaker[speaker]:
      split = splits[split_of_clip(path)]
      split.files.append(path)
      split.labels.append(speaker)
  for name, split in splits.items():
    if not split.files:
      raise ValueError(f"--data {root!r}: the speaker task's {name} split is empty")
  return speakers, splits


def load_task(task, root, classes=35, min_speaker_clips=10):
  if not tf.io.gfile.isdir(root):
    raise ValueError(f"--data {root!r} is not a directory")
  if task == "keyword":
    return keyword_task(root, classes)
  if task == "speaker":
    return speaker_task(root, min_speaker_clips)
  raise ValueError(f"--task must be one of {TASKS}, got {task!r}")


def silence_cuts(src, wanted):
  """`_silence_` clips for the 12-class task: {split: [(name, 1 s float32 cut)]}.

  1 s cuts of `_background_noise_/*.wav`, `wanted[split]` per split, the noise files dealt
  out to the splits in turn so no recording spans two splits.
  """
  noise_dir = os.path.join(src, "_background_noise_")
  noises = sorted(n for n in os.listdir(noise_dir) if n.endswith(".wav")) \
      if os.path.isdir(noise_dir) else []
  if not noises:
    raise ValueError(f"--src {src!r}: 12 classes need _background_noise_/*.wav for _silence_")
  cuts_of = {s: [] for s in SPLITS}
  for i, noise in enumerate(noises):
    split = SPLITS[i % len(SPLITS)] if len(noises) >= len(SPLITS) else None
    audio, _ = sf.read(os.path.join(noise_dir, noise), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    cuts = [audio[k:k + SAMPLE_RATE] for k in range(0, audio.size - SAMPLE_RATE + 1, SAMPLE_RATE)]
    for j, cut in enumerate(cuts):
      target = split or SPLITS[j % len(SPLITS)]
      if len(cuts_of[target]) < wanted[target]:
        cuts_of[target].append((f"_silence_-{os.path.splitext(noise)[0]}-{j:04d}.wav", cut))
  return cuts_of
