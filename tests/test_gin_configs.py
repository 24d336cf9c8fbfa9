"""Every gin file parses, and builds its model and optimizer as the recipe says; shipped
configs are found by name from anywhere, and ship in the wheel."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import gin
import pytest
import tf_keras

from cola_tf import encoders
from cola_tf import frontend as frontend_lib
from cola_tf import model as model_lib
from cola_tf.runtime import optimization
from cola_tf.runtime import configuration
from cola_tf.runtime import training  # noqa: F401  (registers train.* for the gin files)
from conftest import REPO, subprocess_env

EXPERIMENT = os.path.join(REPO, "experiments", "generated_speech")
GIN_FILES = sorted(configuration.packaged_configs().values()) + sorted(
    glob.glob(os.path.join(EXPERIMENT, "*.gin")))
# name -> (encoder, peak LR, weight decay, max drop path, log-mel normalisation)
EXPECTED = {
    "tiny.gin": ("small_cnn", 1e-3, 1e-4, 0.1, "none"),
    "efficientnet_b0.gin": ("efficientnet_b0", 5e-5 * 8, 1e-6, 0.2, "per_window"),
    "convnext_tiny.gin": ("convnext_tiny", 1e-3 * 8, 0.005, 0.1, "none"),
    "convnext_large.gin": ("convnext_large", 1e-3 * 8, 0.005, 0.2, "none"),
}


def test_every_seed_config_is_present():
  assert set(EXPECTED) <= {os.path.basename(p) for p in GIN_FILES}


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_gin_file_parses_and_builds(path, clean_gin):
  variant = os.path.basename(os.path.dirname(path)) == "variants"  # added after a config
  base = "convnext_tiny" if os.path.basename(path).startswith("convnext_") else "tiny"
  configuration.parse_gin([base] * variant + [path], [], None)
  frontend = frontend_lib.LogMelFrontend()
  shape = configuration.model_input_shape(frontend, gin.query_parameter("train.crop_seconds"))
  assert shape == (100, 64)
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


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(EXPERIMENT, "ablations", "*.gin"))),
                         ids=os.path.basename)
def test_experiment_ablations_parse_on_their_arm(path, clean_gin):
  with open(path) as f:
    assert f.readline().startswith("# ablation: ")
    convnext_only = f.readline().strip() == "# encoder: convnext"
  arm = "convnext_arm.gin" if convnext_only else "recipe_arm.gin"
  configuration.parse_gin([os.path.join(EXPERIMENT, arm), path], [], None)


def test_convnext_only_ablations_are_left_out_of_other_arms():
  sys.path.insert(0, EXPERIMENT)
  import run  # pylint: disable=import-outside-toplevel  (experiments/generated_speech/run.py)
  small = {name for name, _ in run.ablations("all", "cola recipe")}
  convnext = {name for name, _ in run.ablations("all", "cola recipe ConvNeXt-atto")}
  assert small < convnext and all("ConvNeXt" in name for name in convnext - small)
  assert [n for n, _ in run.ablations("10", "cola recipe")] == [
      "ConvNeXt layer-scale init 0.1 (not 1e-6)"]  # named explicitly: kept


@pytest.mark.slow  # a process of its own
def test_shipped_configs_by_name_from_any_directory(tmp_path):
  code = ("import official.modeling.optimization, cola_tf.runtime.training; "
          "from cola_tf.runtime import configuration as c; "
          "print(c.resolve_gin_file('tiny')); print(c.resolve_gin_file('gin/convnext_tiny.gin')); "
          "c.parse_gin(['efficientnet_b0'], [], None); "
          "import gin; print(gin.query_parameter('build_encoder.name'))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.split()
  assert lines[0] == os.path.join(REPO, "gin", "tiny.gin")  # the checkout's top-level gin/
  assert lines[1] == os.path.join(REPO, "gin", "encoders", "convnext_tiny.gin")
  assert lines[2] == "efficientnet_b0"
  names = configuration.packaged_configs()
  on_disk = (glob.glob(os.path.join(REPO, "gin", "*.gin"))
             + glob.glob(os.path.join(REPO, "gin", "*", "*.gin")))
  assert len(names) == len(on_disk) and "tiny.gin" in names  # no two share a name
  with pytest.raises(FileNotFoundError, match="nor a shipped config: .*tiny.gin"):
    configuration.resolve_gin_file("no_such_config")


@pytest.mark.slow  # a process of its own
def test_the_wheel_ships_every_gin_file(tmp_path):
  source = tmp_path / "src"  # a copy: building writes build/ and egg-info beside setup.py
  ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
  for name in ("cola_tf", "hear_module", "gin"):
    shutil.copytree(os.path.join(REPO, name), source / name, ignore=ignore)
  shutil.copy(os.path.join(REPO, "setup.py"), source / "setup.py")
  proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                         "-q", "-w", str(tmp_path), str(source)], capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  (wheel,) = glob.glob(str(tmp_path / "cola_tf-*.whl"))
  with zipfile.ZipFile(wheel) as z:
    shipped = {n for n in z.namelist() if n.endswith(".gin")}
  expected = {"cola_tf/" + os.path.relpath(p, REPO) for p in
              configuration.packaged_configs().values()}
  assert shipped == expected and "cola_tf/gin/tiny.gin" in shipped
  # Installed from the wheel, the configs are found by name from any directory.
  target = tmp_path / "installed"
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                         str(target), wheel], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  env = {**subprocess_env(), "PYTHONPATH": str(target)}
  code = ("from cola_tf.runtime import configuration as c; print(c.resolve_gin_file('gin/tiny.gin')); "
          "print(c.resolve_gin_file('recipe_tpu'))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == [str(target / "cola_tf" / "gin" / "tiny.gin"),
                                 str(target / "cola_tf" / "gin" / "schedules" / "recipe_tpu.gin")]


def test_the_shipped_variant_sets_what_it_names(clean_gin):
  """gin/variants/cosine_window_stats.gin after tiny.gin: cosine similarity (T = 0.1),
  per-window log-mel standardisation, statistics pooling (twice the channels)."""
  configuration.parse_gin(["tiny", "cosine_window_stats"], [], None)
  frontend = frontend_lib.LogMelFrontend()
  assert frontend.normalization == "per_window"
  model = model_lib.ColaModel(encoder=encoders.build_encoder(input_shape=(100, 64)))
  assert model.similarity == "cosine" and model.temperature == pytest.approx(0.1)
  assert model.encoder.output_shape[-1] == 2 * 192  # small_cnn's 192 channels, mean and std


def test_the_convnext_cpu_variant_composes_with_the_recipe_configs(clean_gin):
  """gin/variants/convnext_cpu.gin after convnext_tiny.gin: the tuned variant's three changes,
  blocks whose layer scales start at 0.1, and 4x the recipe's base rate."""
  configuration.parse_gin(["convnext_tiny", "convnext_cpu"], [], None)
  assert frontend_lib.LogMelFrontend().normalization == "per_window"
  model = model_lib.ColaModel(encoder=encoders.build_encoder(input_shape=(100, 64)))
  assert model.similarity == "cosine" and model.encoder.name == "convnext_tiny"
  scales = [w for w in model.encoder.weights if "layer_scale" in w.name]
  assert scales and all(float(tf_keras.backend.get_value(w).max()) == pytest.approx(0.1)
                        for w in scales)
  assert gin.query_parameter("build_adamw.learning_rate") == pytest.approx(4e-3)


def test_benchmark_tables_come_from_the_registry_and_the_shipped_configs():
  """The benchmarks state no encoder list of their own: which config runs an encoder is
  read from the shipped gin files, which encoders and variants they time from the registry."""
  from cola_tf.benchmarks import __main__ as benchmarks  # pylint: disable=import-outside-toplevel
  assert configuration.config_of_encoder("small_cnn") == "tiny.gin"
  assert configuration.config_of_encoder("efficientnet_b0") == "efficientnet_b0.gin"
  assert configuration.config_of_encoder("convnext_large") == "convnext_large.gin"
  assert configuration.config_of_encoder("convnext_atto") is None
  rows = benchmarks.default_configs()
  assert {r[0] for r in rows} == {"small_cnn", "efficientnet_b0", "convnext_tiny"}
  assert ("convnext_tiny", "mixed_bfloat16", False, "float32_blocks") in rows
  assert ("convnext_tiny", "float32", False, "grouped") in rows
  assert ("efficientnet_b0", "float32", True, None) in rows
