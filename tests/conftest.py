"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and a private cache."""
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("COLA_TF_CACHE", tempfile.mkdtemp(prefix="cola_tf_test_cache-"))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import official.modeling.optimization  # noqa: E402,F401  (before gin parses anything)
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture
def clean_gin():
  import gin
  gin.clear_config()
  yield
  gin.clear_config()
  import tf_keras
  tf_keras.mixed_precision.set_global_policy("float32")


def graph_ops(ds):
  """Op types in a dataset's graph, its functions included (to check for Python ops)."""
  graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())  # pylint: disable=protected-access
  ops = {n.op for n in graph.node}
  for fn in graph.library.function:
    ops |= {n.op for n in fn.node_def}
  return ops


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """(model_dir, export_dir) of a quick tiny.gin run through the CLI, which exports at its
  end. Shared by the export, HEAR and adapter tests: treat it as read-only."""
  model_dir = str(tmp_path_factory.mktemp("tiny_run") / "run")
  args = [sys.executable, "-m", "cola_tf.train", "--gin_file",
          "tiny", "--model_dir", model_dir]
  for p in ("SyntheticSource.num_clips = 64", "train.global_batch_size = 16",
            "train.total_steps = 6", "build_adamw.warmup_steps = 2", "train.steps_per_loop = 3",
            "train.evaluation = None"):
    args += ["--gin_param", p]
  proc = subprocess.run(args, cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "exported the frozen encoder (192-d, step 6)" in proc.stdout
  return model_dir, os.path.join(model_dir, "export")


def subprocess_env():
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def in_fresh_process(module, function, *args):
  """Runs tests/MODULE.py's FUNCTION(*args) (strings) in a new Python process with this
  set-up (2 logical CPU devices): collective ops of strategies made earlier in the test
  process can clash with a new strategy's (same instance keys, other op types)."""
  code = ("import sys; sys.path.insert(0, sys.argv[1]); import conftest, importlib; "
          "getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(*sys.argv[4:])")
  proc = subprocess.run([sys.executable, "-c", code, os.path.join(REPO, "tests"), module,
                         function, *args], cwd=REPO, env=subprocess_env(), capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


NUMPY_WORDS = ("cat", "dog", "up", "down", "go", "yes", "no", "left")


def make_speech_commands_tree(root, num_words=3, num_speakers=10, espeak=True):
  """A Speech Commands v0.02 tree: the espeak-ng generator (scripts/) when espeak-ng is
  installed (and `espeak`), else the same layout from numpy tones (word = pitch band; its
  words include six of the ten keywords)."""
  script = os.path.join(REPO, "scripts", "make_speech_commands_synth.py")
  if espeak and shutil.which("espeak-ng") and os.path.exists(script):
    subprocess.run([sys.executable, script, root, "--speakers", str(num_speakers), "--words",
                    str(num_words), "--seed", "1"], check=True, capture_output=True,
                   env=subprocess_env())
    return
  from cola_tf.data import sources  # pylint: disable=import-outside-toplevel
  sources.write_speech_commands_tones(root, NUMPY_WORDS[:num_words], num_speakers)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: end-to-end runs (training, multi-worker, experiment); the edit loop "
      "runs `pytest -m 'not slow' tests`, CI runs everything")
