"""Install in parts: the core install (trainer, export, hear_module) needs no torch."""
import os
import subprocess

import pytest
import sys

from conftest import REPO, subprocess_env

sys.path.insert(0, os.path.join(REPO, "scripts"))
import install_sizes  # noqa: E402


def test_core_requirements_do_not_reach_torch():
  import importlib.metadata as md
  requires = md.distribution("cola_tf").requires
  core = [r for r in requires if "extra ==" not in r]
  hear = [r.split(";")[0] for r in requires if 'extra == "hear"' in r]
  assert "torch" not in install_sizes.closure(core)
  assert {"torch", "pytorch-lightning"} <= install_sizes.closure(hear)


@pytest.mark.slow  # a process of its own
def test_core_modules_import_without_torch():
  code = ("import sys, hear_module, cola_tf.train, cola_tf.export.__main__, cola_tf.linear_probe; "
          "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'heareval')); "
          "print(bad); sys.exit(1 if bad else 0)")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


@pytest.mark.slow  # a process of its own
def test_hear_module_imports_tensorflow_only():
  """...not Keras either: without TF_USE_LEGACY_KERAS (which cola_tf sets for its own
  processes, and makes TensorFlow itself load tf_keras), nothing imports tf_keras."""
  code = ("import sys, hear_module; "
          "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
          "('gin', 'tf_keras', 'official', 'torch') or m in ('cola_tf.runtime.training', 'cola_tf.export.frozen_encoder')); "
          "print(bad); sys.exit(1 if bad else 0)")
  env = {k: v for k, v in subprocess_env().items() if k != "TF_USE_LEGACY_KERAS"}
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
