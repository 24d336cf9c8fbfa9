"""Test set-up: two logical CPU devices (for MirroredStrategy tests) and a private cache."""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
  # Two workers on two cores: torch's OpenMP threads (in-process and in heareval's runners)
  # spin against the other worker's processes (a torch test ran 14x slower beside heareval).
  # TensorFlow keeps its thread pools: limited to one thread, its tests ran 2-5x slower.
  for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
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


def _session_root(config):
  """A folder of this test session shared by its pytest-xdist workers (the parent of their
  basetemps), or the basetemp of a run without xdist."""
  root = config._tmp_path_factory.getbasetemp()  # pylint: disable=protected-access
  return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def _readme_paths(config):
  root = _session_root(config)
  return {"root": root, "model_dir": str(root / "readme_run" / "tiny"),
          "stdout": root / "readme_run.out", "stderr": root / "readme_run.err",
          "code": root / "readme_run.code"}


def _start_readme_run(config):
  """Starts README command 1 in the background, once a session (the first worker to get the
  lock starts it): the tests run while it trains, and those that need it wait."""
  import filelock  # pylint: disable=import-outside-toplevel
  paths = _readme_paths(config)
  with filelock.FileLock(str(paths["root"] / "readme_run.lock")):
    started = paths["root"] / "readme_run.started"
    if started.exists():
      return
    argv = [sys.executable, "-m", "cola_tf.train", "--gin_file", "gin/tiny.gin", "--model_dir",
            paths["model_dir"]]
    # The exit code lands in a file of its own once the run is over, whichever worker waits.
    script = (f"{shlex.join(argv)} > {shlex.quote(str(paths['stdout']))} "
              f"2> {shlex.quote(str(paths['stderr']))}; echo $? > {shlex.quote(str(paths['code']))}.tmp"
              f" && mv {shlex.quote(str(paths['code']))}.tmp {shlex.quote(str(paths['code']))}")
    subprocess.Popen(["bash", "-c", script], cwd=REPO, env=subprocess_env(),
                     start_new_session=True)
    started.write_text(str(os.getpid()))


def pytest_collection_modifyitems(config, items):
  """Tests that read the README run are end to end: marked slow (before `-m` deselects).
  Modules that take longest go first (pytest-xdist's --dist worksteal gives each worker a
  contiguous half of this order and lets an idle one take tests from the other's tail, so
  the long ones start at once and the workers end together)."""
  for item in items:
    if _needs_readme_run(item):
      item.add_marker(pytest.mark.slow)
  items.sort(key=lambda item: _module_rank(item.nodeid))


def pytest_collection_finish(session):
  """The README run starts now (in the background) if a selected test needs it."""
  if any(_needs_readme_run(item) for item in session.items):
    _start_readme_run(session.config)


def _needs_readme_run(item):
  return bool({"readme_run", "tiny_run"} & set(getattr(item, "fixturenames", ())))


# The longest modules (2 cores): they start first, those needing the README run (which trains
# meanwhile) after the others; the rest keep their order.
LONGEST_MODULES = ("test_experiment_generated_speech.py", "test_run_control.py",
                   "test_train.py", "test_hear_eval.py", "test_export_hear.py",
                   "test_encoders.py")


def _module_rank(nodeid):
  module = os.path.basename(nodeid.split("::", 1)[0])
  return LONGEST_MODULES.index(module) if module in LONGEST_MODULES else len(LONGEST_MODULES)


@pytest.fixture(scope="session")
def readme_run(pytestconfig):
  """README command 1 as users run it (tiny.gin: 200 steps, online evaluation, export at
  the end), once a session, started in the background when the tests are collected:
  {model_dir, export, stdout, stderr}. tests/test_train.py checks the run; the export, HEAR
  and suite tests use its export (and model_dir) read-only."""
  paths = _readme_paths(pytestconfig)
  _start_readme_run(pytestconfig)
  deadline = time.time() + 900
  while not paths["code"].exists():
    assert time.time() < deadline, "README command 1 did not end in 15 minutes"
    time.sleep(0.5)
  stdout, stderr = paths["stdout"].read_text(), paths["stderr"].read_text()
  assert paths["code"].read_text().strip() == "0", stdout[-3000:] + stderr[-3000:]
  return {"model_dir": paths["model_dir"], "export": os.path.join(paths["model_dir"], "export"),
          "stdout": stdout, "stderr": stderr}


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
