"""s3prl support: the hub entry for the export, what s3prl's runner needs here, and a Speech
Commands tree as s3prl's speech_commands downstream reads it.

Entry points: `python -m hear_module.torch_suites.s3prl_run` (s3prl's run_downstream with
upstream `cola_tf`) and `python -m hear_module.torch_suites.make_s3prl_data` (the data and
config below).

`prepare()` (nothing in s3prl is edited):
* installs torchaudio_compat (the index's torchaudio beside the CPU torch);
* puts an `s3prl.hub` holding only `cola_tf` in sys.modules: s3prl's hub imports all of its
  36 upstreams, whose dependencies (transformers < 5, omegaconf, ...) this one does not need;
* stands in for `catalyst.data.sampler.DistributedSamplerWrapper`, which the
  speech_commands downstream imports for distributed runs only (catalyst 22.4's metadata
  does not install with pip >= 24.1); a distributed run says so and stops;
* allows argparse.Namespace in torch.load (s3prl's checkpoints hold one; torch >= 2.6 loads
  weights only by default).

`write_speech_commands(src, out)`: s3prl splits its training root into train and dev by
hashing file names (never reading the tree's lists) and tests on a separate root of class
folders (12 classes, as Google's v0.01 test set). So OUT/train links the tree's clips outside
testing_list.txt (and the background noise files not cut for test silence), OUT/test holds
the testing_list.txt clips by class (the ten words, `_unknown_` for the others) plus 1 s
`_silence_` cuts, and OUT/config.yaml is s3prl's speech_commands config (the package on the
index ships none) with these roots and a CPU-sized run.
"""
import os
import sys
import warnings
import types
from argparse import Namespace  # in s3prl's checkpoints (see prepare)

import soundfile as sf

from cola_tf import SAMPLE_RATE
from cola_tf.data import sources
from cola_tf.probe.speech_commands import TEN_WORDS
from cola_tf.probe.speech_commands import silence_cuts
from hear_module.torch_suites import torchaudio_compat


def cola_tf(ckpt, *args, **kwargs):
  """The hub entry: `-u cola_tf -k EXPORT_DIR [-g fast]`."""
  from hear_module.torch_suites.s3prl_upstream import ColaTFUpstream  # pylint: disable=import-outside-toplevel
  return ColaTFUpstream(ckpt, *args, **kwargs)


class DistributedSamplerWrapper:  # pylint: disable=too-few-public-methods
  def __init__(self, *args, **kwargs):
    raise RuntimeError("s3prl_support: distributed s3prl runs need catalyst's "
                       "DistributedSamplerWrapper (pip install catalyst==22.4 with pip < 24.1)")


def _stand_in(name, **attributes):
  if name not in sys.modules:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
  return sys.modules[name]


def prepare():
  torchaudio_compat.install()
  import torch  # pylint: disable=import-outside-toplevel
  torch.serialization.add_safe_globals([Namespace])
  try:
    import catalyst.data.sampler  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    _stand_in("catalyst")
    _stand_in("catalyst.data")
    _stand_in("catalyst.data.sampler", DistributedSamplerWrapper=DistributedSamplerWrapper)
  import s3prl  # pylint: disable=import-outside-toplevel
  s3prl.hub = _stand_in("s3prl.hub", cola_tf=cola_tf,
                        options=lambda only_registered_ckpt=False: ["cola_tf"])
  _quiet_featurizer_probe()


def _quiet_featurizer_probe():
  """s3prl's Featurizer sizes the upstream by embedding `torch.randn(16000)` (peaks ~4):
  hear_module's AudioRangeWarning would be about s3prl's probe, not the user's audio."""
  from s3prl.upstream import interfaces  # pylint: disable=import-outside-toplevel
  from hear_module import AudioRangeWarning  # pylint: disable=import-outside-toplevel
  init = interfaces.Featurizer.__init__
  if getattr(init, "quiet_probe", False):
    return

  def quiet_init(self, *args, **kwargs):
    import hear_module  # pylint: disable=import-outside-toplevel
    warned = hear_module._warned_loud  # pylint: disable=protected-access
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", AudioRangeWarning)
      init(self, *args, **kwargs)
    hear_module._warned_loud = warned  # the user's own loud audio still gets its warning

  quiet_init.quiet_probe = True
  interfaces.Featurizer.__init__ = quiet_init


CONFIG = """\
# s3prl's downstream/speech_commands/config.yaml (s3prl on GitHub), roots and run length set by
# hear_module.torch_suites.make_s3prl_data.
runner:
  total_steps: {steps}
  gradient_clipping: 1
  gradient_accumulate_steps: 1
  log_step: {log_step}
  eval_step: {eval_step}
  save_step: {steps}
  max_keep: 1
  eval_dataloaders:
    - dev
    - test

optimizer:
  name: TorchOptim
  torch_optim_name: Adam
  lr: 1.0e-3

downstream_expert:
  datarc:
    speech_commands_root: {train}
    speech_commands_test_root: {test}
    num_workers: 0
    batch_size: {batch_size}

  modelrc:
    projector_dim: 256
    select: UtteranceLevel
    UtteranceLevel:
      pooling: MeanPooling
"""


def _link(target, link):
  os.makedirs(os.path.dirname(link), exist_ok=True)
  if not os.path.lexists(link):
    os.symlink(os.path.abspath(target), link)


def write_speech_commands(src, out, steps=300, eval_step=150, batch_size=32):
  """Writes OUT/train, OUT/test and OUT/config.yaml; returns {test class: clips}."""
  clips = sources.speech_commands_clips(src)
  if not clips:
    raise ValueError(f"--src {src!r}: no word folders with .wav clips")
  counts = {}
  for path, word, split in clips:
    rel = os.path.join(word, os.path.basename(path))
    if split != "test":
      _link(path, os.path.join(out, "train", rel))
      continue
    label = word if word in TEN_WORDS else "_unknown_"
    _link(path, os.path.join(out, "test", label, f"{word}-{os.path.basename(path)}"))
    counts[label] = counts.get(label, 0) + 1
  noise_dir = os.path.join(src, "_background_noise_")
  noises = sorted(n for n in os.listdir(noise_dir) if n.endswith(".wav"))
  for i, noise in enumerate(noises):  # silence_cuts deals noise i to split i % 3 (test: 2)
    if len(noises) < 3 or i % 3 != 2:
      _link(os.path.join(noise_dir, noise), os.path.join(out, "train", "_background_noise_",
                                                        noise))
  wanted = {"train": 0, "valid": 0, "test": max(1, sum(counts.values()) // 11)}
  for name, cut in silence_cuts(src, wanted)["test"]:
    os.makedirs(os.path.join(out, "test", "_silence_"), exist_ok=True)
    sf.write(os.path.join(out, "test", "_silence_", name), cut, SAMPLE_RATE, subtype="PCM_16")
    counts["_silence_"] = counts.get("_silence_", 0) + 1
  with open(os.path.join(out, "config.yaml"), "w") as f:
    f.write(CONFIG.format(steps=steps, log_step=max(1, min(50, steps)), eval_step=eval_step,
                          batch_size=batch_size, train=os.path.abspath(os.path.join(out, "train")),
                          test=os.path.abspath(os.path.join(out, "test"))))
  return counts
