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
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
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


def _tone(freq, seconds, rate=16000):
  t = np.arange(int(seconds * rate)) / rate
  return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


SR = 16000
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
  rng = np.random.default_rng(0)
  words = NUMPY_WORDS[:num_words]
  speakers = [f"{i:08x}" for i in range(num_speakers)]
  val, test = [], []
  for w_i, word in enumerate(words):
    os.makedirs(os.path.join(root, word))
    for s_i, spk in enumerate(speakers):
      rel = f"{word}/{spk}_nohash_0.wav"
      sf.write(os.path.join(root, rel), _tone(300 + 200 * w_i + 10 * s_i, 1.0)
               + 0.01 * rng.standard_normal(SR).astype(np.float32), SR, subtype="PCM_16")
      (val if s_i == 0 else test if s_i == 1 else []).append(rel)
  os.makedirs(os.path.join(root, "_background_noise_"))
  sf.write(os.path.join(root, "_background_noise_", "white_noise.wav"),
           0.1 * rng.standard_normal(5 * SR).astype(np.float32), SR, subtype="PCM_16")
  for name, rels in (("validation_list.txt", val), ("testing_list.txt", test)):
    with open(os.path.join(root, name), "w") as f:
      f.write("".join(r + "\n" for r in sorted(rels)))




def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: end-to-end runs (training, multi-worker, experiment); the edit loop "
      "runs `pytest -m 'not slow' tests`, CI runs everything")
