"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and a private cache."""
import json
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


def shared_once(tmp_path_factory, name, make):
  """`make(folder)`'s JSON-able result, computed once per test session, also across
  pytest-xdist workers (the first to ask makes it under a file lock; the others read it):
  the session's expensive fixtures (a training run and its export) are shared, read-only."""
  import filelock  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the folder every worker's basetemp shares
  folder, done = root / name, root / f"{name}.json"
  with filelock.FileLock(str(root / f"{name}.lock")):
    if not done.exists():
      folder.mkdir(exist_ok=True)
      result = make(str(folder))
      done.write_text(json.dumps(result))
  return json.loads(done.read_text())


def _readme_command(folder):
  """README command 1 (tiny.gin: 200 steps, online evaluation, export at the end)."""
  model_dir = os.path.join(folder, "tiny")
  proc = subprocess.run([sys.executable, "-m", "cola_tf.train", "--gin_file", "gin/tiny.gin",
                         "--model_dir", model_dir], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return {"model_dir": model_dir, "export": os.path.join(model_dir, "export"),
          "stdout": proc.stdout, "stderr": proc.stderr}


@pytest.fixture(scope="session")
def readme_run(tmp_path_factory):
  """README command 1 as users run it, once a session: {model_dir, export, stdout, stderr}.
  tests/test_train.py checks the run; the export, HEAR and suite tests use its export (and
  model_dir) read-only."""
  return shared_once(tmp_path_factory, "readme_run", _readme_command)


@pytest.fixture(scope="session")
def tiny_run(readme_run):
  """(model_dir, export_dir) of the shared README run."""
  return readme_run["model_dir"], readme_run["export"]


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
