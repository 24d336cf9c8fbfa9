"""The whole lifecycle on a filesystem other than local disk: TF's ram:// stands in for gs://
(TF's GCS filesystem has its endpoints compiled in, so no local emulator can stand in).
Data, model_dir, operative config, checkpoints, resume, export, HEAR and the probe's readers
all go through tf.io.gfile."""
import pytest
import os

import gin
import numpy as np
import tensorflow as tf

import hear_module
from cola_tf.runtime import configuration
from cola_tf.export import frozen_encoder
from cola_tf.probe import embedders
from cola_tf.probe import speech_commands
from cola_tf.runtime import training as train_lib
from cola_tf.data import sources
from cola_tf.data import synthetic
from conftest import make_speech_commands_tree

pytestmark = pytest.mark.slow  # end-to-end runs in subprocesses: `-m "not slow"` skips them

TINY = "tiny"


def _copy_tree(local, remote):
  for dirpath, _, names in os.walk(local):
    for name in names:
      rel = os.path.relpath(os.path.join(dirpath, name), local)
      tf.io.gfile.makedirs(os.path.dirname(f"{remote}/{rel}"))
      tf.io.gfile.copy(os.path.join(dirpath, name), f"{remote}/{rel}", overwrite=True)


def test_train_resume_export_and_embed_on_ram_filesystem(tmp_path, clean_gin):
  root = "ram://cola_tf_test"
  clips = synthetic.SyntheticSource(num_clips=24, seconds=2.0, seed=5,
                                    cache_dir=str(tmp_path / "clips"))
  _copy_tree(os.path.dirname(clips.files()[0]), f"{root}/data/nested")
  with tf.io.gfile.GFile(f"{root}/data/manifest.csv", "w") as f:
    f.write("files\n" + "".join(f"nested/{os.path.basename(p)}\n" for p in clips.files()))
  folder = sources.FolderSource(f"{root}/data")
  manifest = sources.ManifestSource(f"{root}/data/manifest.csv")
  assert len(folder) == len(manifest) == 24
  assert manifest.files()[0].startswith(f"{root}/data/nested/")

  model_dir = f"{root}/run"
  params = ["train.source = @ManifestSource()",
            f"ManifestSource.manifest = '{root}/data/manifest.csv'",
            "train.global_batch_size = 8", "train.steps_per_loop = 2",
            "train.checkpoint_every = 2", "build_adamw.warmup_steps = 1"]
  configuration.parse_gin([TINY], params + ["train.total_steps = 4"], model_dir)
  assert train_lib.train(model_dir)["step"] == 4
  assert tf.io.gfile.exists(f"{model_dir}/operative_config.gin")
  # Resume with no gin file: the operative config is read back from ram://.
  gin.clear_config()
  configuration.parse_gin([], ["train.total_steps = 6"], model_dir)
  resumed = train_lib.train(model_dir)
  assert (resumed["start_step"], resumed["step"]) == (4, 6)
  assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-6")

  meta = frozen_encoder.export(model_dir, f"{model_dir}/export")
  assert meta["training_step"] == 6
  model = hear_module.load_model(f"{model_dir}/export")
  audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)
  scene = hear_module.get_scene_embeddings(audio, model).numpy()
  embedder = embedders.ExportEmbedder(f"{model_dir}/export", "scene")
  np.testing.assert_allclose(embedder.clips(audio).numpy(), scene, rtol=1e-5, atol=1e-6)

  local_sc = str(tmp_path / "sc")
  make_speech_commands_tree(local_sc, num_words=2, num_speakers=4)
  _copy_tree(local_sc, f"{root}/sc")
  remote = sources.SpeechCommandsSource(f"{root}/sc", "all")
  assert len(remote) == len(sources.SpeechCommandsSource(local_sc, "all"))
  names, splits = speech_commands.keyword_task(f"{root}/sc", 35)
  assert len(names) == 2 and len(splits["train"]) > 0
