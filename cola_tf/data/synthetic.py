"""The embedded default corpus: structured synthetic audio generated on first use.

Nothing is downloaded or shipped: `SyntheticSource` writes `num_clips` 16-bit WAV clips into
a cache folder (atomically, keyed by its parameters) and is then read through the same file
path as any real corpus. Each clip is one "sound source" with its own identity (a melodic
instrument with its own timbre, a vowel-like voice with its own formants and pitch, a
textured noise with its own band and modulation, or a rhythm with its own tempo and
resonance) over a little background noise, so two crops of one clip share structure that
crops of other clips lack: exactly what COLA must learn to recognise.
"""
import hashlib
import json
import os
import shutil
import tempfile

import gin
import numpy as np
import soundfile as sf
from scipy import signal

from cola_tf import SAMPLE_RATE
from cola_tf import logs
from cola_tf.data import sources

KINDS = ("melody", "voice", "texture", "rhythm")
_VERSION = 1


def _envelope(n, attack, decay):
  t = np.arange(n) / SAMPLE_RATE
  return np.minimum(t / max(attack, 1e-3), 1.0) * np.exp(-t / decay)


def _melody(rng, n):
  f_lo = 110.0 * 2 ** rng.uniform(0, 3)
  harmonics = rng.uniform(0.2, 1.0, size=8) ** rng.uniform(1, 4) * (1.0 / np.arange(1, 9)) ** rng.uniform(0, 2)
  note = int(SAMPLE_RATE * rng.uniform(0.08, 0.4))
  decay = rng.uniform(0.05, 0.6)
  vibrato = rng.uniform(0, 6)
  scales = ([0, 2, 4, 5, 7, 9, 11], [0, 3, 5, 7, 10], [0, 2, 3, 5, 7, 8, 10])
  scale = scales[rng.integers(len(scales))]
  out = np.zeros(n, np.float32)
  for start in range(0, n, note):
    m = min(note, n - start)
    f0 = f_lo * 2 ** ((scale[rng.integers(len(scale))] + 12 * rng.integers(0, 2)) / 12)
    t = np.arange(m) / SAMPLE_RATE
    phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * vibrato * t))
    tone = sum(a * np.sin(k * phase) for k, a in enumerate(harmonics, 1) if k * f0 < 7500)
    out[start:start + m] = tone * _envelope(m, 0.01, decay)
  return out


def _resonator(x, freq, bandwidth):
  """Two-pole resonant filter (a formant)."""
  r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
  return signal.lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r], x)


def _voice(rng, n):
  f0 = rng.uniform(80, 300)
  t = np.arange(n) / SAMPLE_RATE
  pitch = f0 * (1 + rng.uniform(0.02, 0.15) * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
  phase = np.cumsum(pitch) / SAMPLE_RATE
  source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
  source += rng.uniform(0.0, 0.3) * rng.standard_normal(n)
  vowels = [(rng.uniform(250, 900), rng.uniform(800, 2500), rng.uniform(2200, 3500))
            for _ in range(3)]
  syllable = int(SAMPLE_RATE * rng.uniform(0.15, 0.4))
  out = np.zeros(n)
  for start in range(0, n, syllable):
    seg = source[start:start + syllable]
    formants = vowels[rng.integers(len(vowels))]
    y = sum(_resonator(seg, f, 80 + 0.05 * f) for f in formants)
    out[start:start + len(seg)] = y * np.hanning(len(seg)) ** 0.5
  return out


def _texture(rng, n):
  spec = np.fft.rfft(rng.standard_normal(n))
  freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
  centre, width = rng.uniform(200, 6000), rng.uniform(100, 2000)
  spec *= np.exp(-0.5 * ((freqs - centre) / width) ** 2) + 0.02 * (freqs + 1) ** -rng.uniform(0, 1)
  noise = np.fft.irfft(spec, n)
  t = np.arange(n) / SAMPLE_RATE
  am = 1 + rng.uniform(0.3, 0.9) * np.sin(2 * np.pi * rng.uniform(0.5, 12) * t)
  return noise * am


def _rhythm(rng, n):
  period = int(SAMPLE_RATE * 60 / rng.uniform(70, 220))
  pattern = rng.random(4) < 0.7
  pattern[0] = True
  freq, decay = rng.uniform(150, 4000), rng.uniform(0.01, 0.15)
  m = min(n, int(SAMPLE_RATE * decay * 6))
  t = np.arange(m) / SAMPLE_RATE
  hit = np.sin(2 * np.pi * freq * t * (1 + 0.5 * np.exp(-t / 0.02))) * np.exp(-t / decay)
  hit += rng.uniform(0, 0.5) * rng.standard_normal(m) * np.exp(-t / (decay / 3))
  out = np.zeros(n + m)
  for beat, start in enumerate(range(0, n, period // 2)):
    if pattern[beat % 4]:
      out[start:start + m] += hit * rng.uniform(0.6, 1.0)
  return out[:n]


def synth_clip(rng, seconds, kind=None):
  """One clip of float32 audio in [-1, 1] with a random source identity."""
  n = int(seconds * SAMPLE_RATE)
  kind = kind or KINDS[rng.integers(len(KINDS))]
  audio = {"melody": _melody, "voice": _voice, "texture": _texture, "rhythm": _rhythm}[kind](rng, n)
  audio = audio / (np.abs(audio).max() + 1e-8)
  noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.arange(n // 2 + 1) + 1.0), n)
  audio = audio + noise / (np.abs(noise).max() + 1e-8) * 10 ** (-rng.uniform(15, 40) / 20)
  return (audio / (np.abs(audio).max() + 1e-8) * rng.uniform(0.2, 0.9)).astype(np.float32)


def default_cache_dir():
  return os.environ.get("COLA_TF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "cola_tf"))


def write_corpus(root, num_clips, seconds, seed):
  """Writes the corpus to `root` atomically (a temp folder renamed at the end)."""
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
  try:
    rng = np.random.default_rng(seed)
    for i in range(num_clips):
      kind = KINDS[i % len(KINDS)]
      length = seconds * rng.uniform(0.75, 1.25)
      sf.write(os.path.join(tmp, f"{kind}_{i:05d}.wav"), synth_clip(rng, length, kind),
               SAMPLE_RATE, subtype="PCM_16")
    with open(os.path.join(tmp, "corpus.json"), "w") as f:
      json.dump(dict(num_clips=num_clips, seconds=seconds, seed=seed, version=_VERSION), f)
    try:
      os.rename(tmp, root)
    except OSError:  # another process finished first: keep theirs
      if not os.path.exists(os.path.join(root, "corpus.json")):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


@gin.configurable
class SyntheticSource(sources.FolderSource):
  """The embedded corpus, generated once into `cache_dir` and then read as a folder of WAVs."""

  def __init__(self, num_clips=256, seconds=3.0, seed=0, cache_dir=None):
    key = hashlib.sha1(json.dumps([num_clips, seconds, seed, _VERSION]).encode()).hexdigest()[:10]
    root = os.path.join(cache_dir or default_cache_dir(), f"synthetic-{key}")
    if not os.path.exists(os.path.join(root, "corpus.json")):
      logs.log(f"generating the embedded synthetic corpus ({num_clips} clips of "
               f"~{seconds:g} s) in {root}")
      write_corpus(root, num_clips, seconds, seed)
    super().__init__(root, extensions=("wav",))
