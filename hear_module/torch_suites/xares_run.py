r"""X-ARES's own runner (`xares.run`) with what it needs here; nothing in X-ARES is edited.

  COLA_TF_EXPORT=EXPORT [COLA_TF_FAST=1] XARES_ENV_ROOT=DIR python -m \
      hear_module.torch_suites.xares_run hear_module/torch_suites/xares_encoder.py TASK.py ...

Paths are module paths, as X-ARES turns them into module names (relative to the current
folder or an installed package, never absolute). Before xares.run starts: xares_support's
prepare() and fresh_results(), and one process (`--max-jobs 0`) unless told otherwise:
X-ARES divides by the CUDA device count in its multi-process path, and spawned workers
would each load TensorFlow again.
"""
import os
import runpy
import sys

from hear_module.torch_suites import xares_support


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  xares_support.prepare()
  if not any(a.startswith("--max-jobs") for a in argv):
    argv += ["--max-jobs", "0"]
  sys.path.insert(0, os.getcwd())
  xares_support.fresh_results([a for a in argv if not a.startswith("--")
                               and a.endswith(".py")][1:])
  sys.argv = ["xares.run", *argv]
  runpy.run_module("xares.run", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
