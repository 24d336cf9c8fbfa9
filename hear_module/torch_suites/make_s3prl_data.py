r"""Writes a Speech Commands v0.02 tree as s3prl's speech_commands downstream reads it, and its
config (see hear_module.torch_suites.s3prl_support.write_speech_commands).

  python -m hear_module.torch_suites.make_s3prl_data --src TREE --out DIR \
      [--steps 300] [--eval_step 150] [--batch_size 32]
"""
import argparse

from hear_module.torch_suites import s3prl_support
from cola_tf import logs


def main(argv=None):
  p = argparse.ArgumentParser(description=logs.command_description(__doc__))
  p.add_argument("--src", required=True, help="a Speech Commands v0.02 tree")
  p.add_argument("--out", required=True)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--eval_step", type=int, default=150)
  p.add_argument("--batch_size", type=int, default=32)
  a = p.parse_args(argv)
  try:
    counts = s3prl_support.write_speech_commands(a.src, a.out, a.steps, a.eval_step,
                                                 a.batch_size)
  except ValueError as e:
    p.exit(2, f"make_s3prl_data: {e}\n")
  print(f"wrote {a.out}/train, {a.out}/test ({sum(counts.values())} test clips in "
        f"{len(counts)} classes) and {a.out}/config.yaml")


if __name__ == "__main__":
  main()
