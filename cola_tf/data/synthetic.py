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
_VERSION = 2  # 2: source identities drawn apart from clip content


def _envelope(n, attack, decay):
  t = np.arange(n) / SAMPLE_RATE
  return np.minimum(t / max(attack, 1e-3), 1.0) * np.exp(-t / decay)


# Each kind: a source identity (the parameters a listener would recognise: timbre, pitch
# range, formants, band, tempo), drawn once per source, and content drawn per clip.
def _melody_identity(rng):
  return dict(f_lo=110.0 * 2 ** rng.uniform(0, 3),
              harmonics=(rng.uniform(0.2, 1.0, size=8) ** rng.uniform(1, 4)
                         * (1.0 / np.arange(1, 9)) ** rng.uniform(0, 2)),
              note=int(SAMPLE_RATE * rng.uniform(0.08, 0.4)), decay=rng.uniform(0.05, 0.6),
              vibrato=rng.uniform(0, 6), scale=rng.integers(3))


def _melody(p, rng, n):
  scale = ([0, 2, 4, 5, 7, 9, 11], [0, 3, 5, 7, 10], [0, 2, 3, 5, 7, 8, 10])[p["scale"]]
  out = np.zeros(n, np.float32)
  for start in range(0, n, p["note"]):
    m = min(p["note"], n - start)
    f0 = p["f_lo"] * 2 ** ((scale[rng.integers(len(scale))] + 12 * rng.integers(0, 2)) / 12)
    t = np.arange(m) / SAMPLE_RATE
    phase = 2 * np.pi * f0 * (t + 0.002 * np.sin(2 * np.pi * p["vibrato"] * t))
    tone = sum(a * np.sin(k * phase) for k, a in enumerate(p["harmonics"], 1) if k * f0 < 7500)
    out[start:start + m] = tone * _envelope(m, 0.01, p["decay"])
  return out


def _resonator(x, freq, bandwidth):
  """Two-pole resonant filter (a formant)."""
  r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
  return signal.lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r], x)


def _voice_identity(rng):
  return dict(f0=rng.uniform(80, 300), jitter=rng.uniform(0.02, 0.15),
              jitter_hz=rng.uniform(0.5, 3), breath=rng.uniform(0.0, 0.3),
              vowels=[(rng.uniform(250, 900), rng.uniform(800, 2500), rng.uniform(2200, 3500))
                      for _ in range(3)],
              syllable=int(SAMPLE_RATE * rng.uniform(0.15, 0.4)))


def _voice(p, rng, n):
  t = np.arange(n) / SAMPLE_RATE
  pitch = p["f0"] * (1 + p["jitter"] * np.sin(2 * np.pi * p["jitter_hz"] * t
                                               + rng.uniform(0, 2 * np.pi)))
  phase = np.cumsum(pitch) / SAMPLE_RATE
  source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
  source += p["breath"] * rng.standard_normal(n)
  out = np.zeros(n)
  for start in range(0, n, p["syllable"]):
    seg = source[start:start + p["syllable"]]
    formants = p["vowels"][rng.integers(len(p["vowels"]))]
    y = sum(_resonator(seg, f, 80 + 0.05 * f) for f in formants)
    out[start:start + len(seg)] = y * np.hanning(len(seg)) ** 0.5
  return out


def _texture_identity(rng):
  return dict(centre=rng.uniform(200, 6000), width=rng.uniform(100, 2000),
              tilt=rng.uniform(0, 1), depth=rng.uniform(0.3, 0.9), rate=rng.uniform(0.5, 12))


def _texture(p, rng, n):
  spec = np.fft.rfft(rng.standard_normal(n))
  freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
  spec *= (np.exp(-0.5 * ((freqs - p["centre"]) / p["width"]) ** 2)
           + 0.02 * (freqs + 1) ** -p["tilt"])
  noise = np.fft.irfft(spec, n)
  t = np.arange(n) / SAMPLE_RATE
  am = 1 + p["depth"] * np.sin(2 * np.pi * p["rate"] * t + rng.uniform(0, 2 * np.pi))
  return noise * am


def _rhythm_identity(rng):
  pattern = rng.random(4) < 0.7
  pattern[0] = True
  return dict(period=int(SAMPLE_RATE * 60 / rng.uniform(70, 220)), pattern=pattern,
              freq=rng.uniform(150, 4000), decay=rng.uniform(0.01, 0.15),
              noise=rng.uniform(0, 0.5))


def _rhythm(p, rng, n):
  period, decay = p["period"], p["decay"]
  m = min(n, int(SAMPLE_RATE * decay * 6))
  t = np.arange(m) / SAMPLE_RATE
  hit = np.sin(2 * np.pi * p["freq"] * t * (1 + 0.5 * np.exp(-t / 0.02))) * np.exp(-t / decay)
  hit += p["noise"] * rng.standard_normal(m) * np.exp(-t / (decay / 3))
  out = np.zeros(n + m)
  offset = rng.integers(0, period // 2)
  for beat, start in enumerate(range(offset, n, period // 2)):
    if p["pattern"][beat % 4]:
      out[start:start + m] += hit * rng.uniform(0.6, 1.0)
  return out[:n]


KIND_FUNCTIONS = {"melody": (_melody_identity, _melody), "voice": (_voice_identity, _voice),
                  "texture": (_texture_identity, _texture),
                  "rhythm": (_rhythm_identity, _rhythm)}


def source_identity(rng, kind):
  """The parameters of one sound source of `kind` (a dict; see `synth_clip`)."""
  return KIND_FUNCTIONS[kind][0](rng)


def synth_clip(rng, seconds, kind=None, identity=None):
  """One clip of float32 audio in [-1, 1]: a source of `kind` with `identity` (drawn from
  `rng` when not given: a new source) playing content drawn from `rng`, over background
  noise, at a random gain."""
  n = int(seconds * SAMPLE_RATE)
  kind = kind or KINDS[rng.integers(len(KINDS))]
  identity = identity if identity is not None else source_identity(rng, kind)
  audio = KIND_FUNCTIONS[kind][1](identity, rng, n)
  audio = audio / (np.abs(audio).max() + 1e-8)
  noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) / np.sqrt(np.arange(n // 2 + 1) + 1.0), n)
  audio = audio + noise / (np.abs(noise).max() + 1e-8) * 10 ** (-rng.uniform(15, 40) / 20)
  return (audio / (np.abs(audio).max() + 1e-8) * rng.uniform(0.2, 0.9)).astype(np.float32)


def default_cache_dir():
  return os.environ.get("COLA_TF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "cola_tf"))


def _write_atomically(root, write, metadata):
  """Runs write(folder) on a temporary folder beside `root` and renames it to `root` (which
  another process may have finished first: theirs is kept)."""
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".synthetic-", dir=parent)
  try:
    write(tmp)
    with open(os.path.join(tmp, "corpus.json"), "w") as f:
      json.dump({**metadata, "version": _VERSION}, f)
    try:
      os.rename(tmp, root)
    except OSError:  # another process finished first: keep theirs
      if not os.path.exists(os.path.join(root, "corpus.json")):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def write_corpus(root, num_clips, seconds, seed):
  """Writes the pretraining corpus to `root` atomically: `num_clips` clips, each a new
  source, named KIND_INDEX.wav."""
  def write(folder):
    rng = np.random.default_rng(seed)
    for i in range(num_clips):
      kind = KINDS[i % len(KINDS)]
      length = seconds * rng.uniform(0.75, 1.25)
      sf.write(os.path.join(folder, f"{kind}_{i:05d}.wav"), synth_clip(rng, length, kind),
               SAMPLE_RATE, subtype="PCM_16")

  _write_atomically(root, write, dict(num_clips=num_clips, seconds=seconds, seed=seed))


LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("files", "kind", "identity", "kind_split", "identity_split")


def _split_of(index, count):
  """train / valid / test for item `index` of `count`: the last two items valid and test
  (at least one each), the rest train."""
  held = max(1, round(0.15 * count))
  return "train" if index < count - 2 * held else ("valid" if index < count - held else "test")


def write_labelled_corpus(root, identities_per_kind, clips_per_identity, seconds, seed):
  """A held-out labelled corpus (sources never in the pretraining corpus): per kind,
  `identities_per_kind` sources playing `clips_per_identity` clips each. labels.csv gives
  each clip's kind and source identity, and two splits: `kind_split` by source (the kind
  task generalises to unseen sources) and `identity_split` by clip (same sources, new
  content)."""
  def write(folder):
    rng = np.random.default_rng(seed)
    rows = []
    for kind in KINDS:
      for i in range(identities_per_kind):
        identity = source_identity(rng, kind)
        for j in range(clips_per_identity):
          name = f"{kind}_{i:03d}_{j:02d}.wav"
          sf.write(os.path.join(folder, name), synth_clip(rng, seconds, kind, identity),
                   SAMPLE_RATE, subtype="PCM_16")
          rows.append([name, kind, f"{kind}_{i:03d}", _split_of(i, identities_per_kind),
                       _split_of(j, clips_per_identity)])
    with open(os.path.join(folder, LABELS_FILE), "w") as f:
      f.write("\n".join(",".join(r) for r in [list(LABEL_COLUMNS)] + rows) + "\n")

  _write_atomically(root, write, dict(identities_per_kind=identities_per_kind,
                                      clips_per_identity=clips_per_identity, seconds=seconds,
                                      seed=seed))


def cached_corpus(kind, parameters, write, cache_dir=None):
  """The folder of a generated corpus in the cache, keyed by its parameters; generated (by
  write(root)) on first use, with a line saying so."""
  key = hashlib.sha1(json.dumps([*parameters, _VERSION]).encode()).hexdigest()[:10]
  root = os.path.join(cache_dir or default_cache_dir(), f"{kind}-{key}")
  if not os.path.exists(os.path.join(root, "corpus.json")):
    write(root)
  return root


@sources.register_source
@gin.configurable
class SyntheticSource(sources.FolderSource):
  """The embedded corpus, generated once into `cache_dir` and then read as a folder of WAVs.
  `labels()` gives each clip's kind (every clip is its own source)."""

  def __init__(self, num_clips=256, seconds=3.0, seed=0, cache_dir=None):
    def write(root):
      logs.log(f"generating the embedded synthetic corpus ({num_clips} clips of "
               f"~{seconds:g} s) in {root}")
      write_corpus(root, num_clips, seconds, seed)

    root = cached_corpus("synthetic", [num_clips, seconds, seed], write, cache_dir)
    super().__init__(root, extensions=("wav",))
    self._labels = [os.path.basename(p).split("_", 1)[0] for p in self.files()]

  @classmethod
  def example(cls, root):
    return ["SyntheticSource.num_clips = 8", "SyntheticSource.seconds = 2.0",
            f"SyntheticSource.cache_dir = '{root}/cache'"]
