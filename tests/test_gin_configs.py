"""Every gin file parses, and builds its model and optimizer as the recipe says."""
import glob
import os

import gin
import pytest
import tf_keras

from cola_tf import encoders
from cola_tf import frontend as frontend_lib
from cola_tf import model as model_lib
from cola_tf import optimization
from cola_tf import configuration
from cola_tf import trainer  # noqa: F401  (registers train.* for the gin files)
from conftest import REPO

GIN_FILES = sorted(glob.glob(os.path.join(REPO, "gin", "*.gin")))
# name -> (encoder, peak LR, weight decay, max drop path, log-mel normalisation)
EXPECTED = {
    "tiny.gin": ("small_cnn", 1e-3, 1e-4, 0.1, "none"),
    "efficientnet_b0.gin": ("efficientnet_b0", 5e-5 * 8, 1e-6, 0.2, "per_example"),
    "convnext_tiny.gin": ("convnext_tiny", 1e-3 * 8, 0.005, 0.1, "none"),
    "convnext_large.gin": ("convnext_large", 1e-3 * 8, 0.005, 0.2, "none"),
}


def test_every_seed_config_is_present():
  assert set(EXPECTED) <= {os.path.basename(p) for p in GIN_FILES}


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_gin_file_parses_and_builds(path, clean_gin):
  configuration.parse_gin([path], [], None)
  frontend = frontend_lib.LogMelFrontend()
  shape = configuration.model_input_shape(frontend, gin.query_parameter("train.crop_seconds"))
  assert shape == (97, 64)
  precision = _query("train.precision", None)
  tf_keras.mixed_precision.set_global_policy(precision or "float32")
  model = model_lib.ColaModel(encoder=encoders.build_encoder(input_shape=shape))
  model.build_for(shape)
  batch = _query("train.global_batch_size", 64)
  optimizer, schedule = optimization.build_adamw(
      total_steps=1000, steps_per_epoch=10, global_batch_size=batch)
  name = os.path.basename(path)
  if name not in EXPECTED:
    return
  encoder, peak, decay, drop_path, normalization = EXPECTED[name]
  assert model.encoder.name == encoder
  warmup = gin.query_parameter("build_adamw.warmup_steps") if name == "tiny.gin" else 50
  assert float(schedule(warmup)) == pytest.approx(peak, rel=1e-5)
  assert optimizer.weight_decay_rate == pytest.approx(decay)
  assert frontend.normalization == normalization
  rates = [l.rate for l in _all_layers(model.encoder)
           if isinstance(l, (encoders.DropPath, tf_keras.layers.Dropout))]
  assert rates and 0.8 * drop_path <= max(rates) <= drop_path
  if name != "tiny.gin":
    assert batch == 2048 and _query("train.strategy", None) == "tpu"
    assert gin.query_parameter("train.epochs") == 50


def _query(binding, default):
  try:
    return gin.query_parameter(binding)
  except ValueError:
    return default


def _all_layers(model):
  for layer in model.layers:
    yield layer
    if isinstance(layer, tf_keras.Model):
      yield from _all_layers(layer)
