"""The X-ARES task file of the Speech Commands task xares_support writes (`python -m
hear_module.torch_suites.make_xares_task`): X-ARES's runner finds `speech_commands_config` by
its `_config` ending; the data folder comes from XARES_ENV_ROOT."""
import json
import os

from hear_module.torch_suites import xares_support


def speech_commands_config(encoder):
  from xares.task import TaskConfig  # pylint: disable=import-outside-toplevel
  env_root = os.environ.get(xares_support.ENV_ROOT)
  classes_file = os.path.join(env_root or "", xares_support.NAME, xares_support.CLASSES_FILE)
  if not env_root or not os.path.isfile(classes_file):
    raise ValueError(f"{xares_support.NAME}: set {xares_support.ENV_ROOT} to the folder "
                     "written by `python -m hear_module.torch_suites.make_xares_task` (no "
                     f"{classes_file})")
  with open(classes_file) as f:
    index = {word: i for i, word in enumerate(json.load(f))}
  return TaskConfig(
      encoder=encoder, name=xares_support.NAME,
      formal_name="Speech Commands words (cola_tf, local)", env_root=env_root, private=False,
      zenodo_id=None, train_split="wds-audio-train", valid_split="wds-audio-valid",
      test_split="wds-audio-test", output_dim=len(index),
      label_processor=lambda sample: index[sample["label"]], batch_size_train=32,
      batch_size_encode=16, num_encoder_workers=0, learning_rate=1e-3, epochs=20,
      torch_num_threads=1, eval_weight=1)
