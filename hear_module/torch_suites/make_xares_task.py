r"""Writes the X-ARES task built from a Speech Commands v0.02 tree (xares_support).

  python -m hear_module.torch_suites.make_xares_task --src TREE --env_root DIR
  XARES_ENV_ROOT=DIR COLA_TF_EXPORT=EXPORT python -m hear_module.torch_suites.xares_run \
      hear_module/torch_suites/xares_encoder.py hear_module/torch_suites/xares_speech_commands.py
"""
import argparse

from cola_tf import logs
from hear_module.torch_suites import xares_support


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--src", required=True, help="a Speech Commands v0.02 tree")
  p.add_argument("--env_root", required=True, help="X-ARES's environment folder")
  a = p.parse_args(argv)
  try:
    counts = xares_support.write_speech_commands(a.src, a.env_root)
  except ValueError as e:
    p.exit(2, f"make_xares_task: {e}\n")
  print(f"wrote X-ARES task {xares_support.NAME} in {a.env_root}: {counts}")


if __name__ == "__main__":
  main()
