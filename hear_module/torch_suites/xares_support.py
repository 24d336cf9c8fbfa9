"""X-ARES support: what its runner needs here, and a task built locally from a Speech
Commands v0.02 tree (word classification, every word of the tree, splits as its lists say).

Entry points: `python -m hear_module.torch_suites.xares_run` (X-ARES's runner) and
`python -m hear_module.torch_suites.make_xares_task` (the task's data); the task file X-ARES
takes is hear_module/torch_suites/xares_speech_commands.py.

`prepare()` (nothing in X-ARES is edited):
* installs torchaudio_compat (without it every clip fails to decode, X-ARES's handler hides
  the errors, and the run ends with "Empty dataloader");
* stands in for jiwer and transformers when they are not installed: X-ARES imports them for
  its ASR tasks only (a stand-in raises when used).
`fresh_results(task_pys)`: X-ARES keys its cached embeddings and scores by the encoder's class
name only, so another export would silently get the old numbers: a task's ColaTFEncoder
results computed from another export (or COLA_TF_FAST) are removed first.
`write_speech_commands(src, env_root)`: X-ARES's layout, written with X-ARES's own writer:
ENV_ROOT/NAME/wds-audio-SPLIT-*.tar (webdataset shards), `classes.json` and
`.audio_tar_ready` (so X-ARES never tries Zenodo).
"""
import json
import os
import shutil
import sys
import types

from cola_tf.data import sources
from hear_module.torch_suites import torchaudio_compat
from hear_module.torch_suites import xares_encoder

NAME = "cola_tf_speech_commands"
ENV_ROOT = "XARES_ENV_ROOT"
SPLITS = {"train": "train", "validation": "valid", "test": "test"}
CLASSES_FILE = "classes.json"
RESULTS = ("embeddings", "checkpoints")  # X-ARES's per-encoder folders under a task's folder
MARKER = "cola_tf_export.json"


def _stand_ins():
  for name, attributes in (("jiwer", ["wer"]),
                           ("transformers", ["AutoModelForCausalLM", "AutoTokenizer"])):
    try:
      __import__(name)
    except ImportError:
      module = types.ModuleType(name)

      def unavailable(*args, _name=name, **kwargs):
        raise ImportError(f"{_name} is not installed (xares_run's stand-in: only X-ARES's ASR "
                          "tasks need it)")
      for attribute in attributes:
        setattr(module, attribute, type(attribute, (), {
            "__init__": unavailable, "from_pretrained": staticmethod(unavailable)})
                if attribute[0].isupper() else unavailable)
      sys.modules[name] = module


def fresh_results(task_pys, who="ColaTFEncoder"):
  """Removes a task's ColaTFEncoder results computed from another export or mode."""
  from xares.utils import attr_from_py_path  # pylint: disable=import-outside-toplevel
  current = {"export": os.path.abspath(os.environ.get(xares_encoder.EXPORT_ENV, "")),
             "fast": xares_encoder.fast_from_env()}
  for task_py in task_pys:
    config = attr_from_py_path(task_py, endswith="_config")(None)
    task_dir = os.path.join(str(config.env_root), config.name)
    marker = os.path.join(task_dir, "embeddings", who, MARKER)
    previous = None
    if os.path.isfile(marker):
      with open(marker) as f:
        previous = json.load(f)
    if previous != current:
      for folder in RESULTS:
        stale = os.path.join(task_dir, folder, who)
        if os.path.isdir(stale):
          print(f"xares_run: {config.name}: removing {stale} (computed with {previous})",
                flush=True)
          shutil.rmtree(stale)
      os.makedirs(os.path.dirname(marker), exist_ok=True)
      with open(marker, "w") as f:
        json.dump(current, f)


def prepare():
  """What X-ARES's imports need here (torchaudio_compat, ASR stand-ins); idempotent."""
  torchaudio_compat.install()
  _stand_ins()


def write_speech_commands(src, env_root, shards=2):
  """Writes the task's shards under env_root/NAME; returns {split: clips}."""
  torchaudio_compat.install()  # xares imports torchaudio
  from xares.audiowebdataset import write_audio_tar  # pylint: disable=import-outside-toplevel
  by_split = {s: [] for s in SPLITS.values()}
  for path, word, split in sources.speech_commands_clips(src):
    by_split[SPLITS[split]].append((path, word))
  empty = [s for s, clips in by_split.items() if not clips]
  if empty:
    raise ValueError(f"--src {src!r}: no clips in its {', '.join(empty)} split(s)")
  task_dir = os.path.join(env_root, NAME)
  os.makedirs(task_dir, exist_ok=True)
  for split, clips in by_split.items():
    write_audio_tar([p for p, _ in clips], [{"label": w} for _, w in clips],
                    os.path.join(task_dir, f"wds-audio-{split}-*.tar"),
                    num_shards=min(shards, len(clips)), force=True)
  with open(os.path.join(task_dir, CLASSES_FILE), "w") as f:
    json.dump(sorted({w for _, w in by_split["train"]}), f)
  open(os.path.join(task_dir, ".audio_tar_ready"), "w").close()
  return {s: len(c) for s, c in by_split.items()}
