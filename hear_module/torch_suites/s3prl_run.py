r"""s3prl's own downstream runner (`run_downstream.py`) with the export as upstream `cola_tf`.

  python -m hear_module.torch_suites.s3prl_run -m train -u cola_tf -k EXPORT_DIR [-g fast] \
      -d speech_commands -c DIR/config.yaml -p EXPDIR --device cpu
  python -m hear_module.torch_suites.s3prl_run -m evaluate -t test -e EXPDIR/dev-best.ckpt

(`python -m hear_module.torch_suites.make_s3prl_data` writes DIR from a Speech Commands
tree; what is prepared before s3prl's runner starts: s3prl_support.) Pass `--device cpu` on a
machine without CUDA (s3prl's default is cuda).
"""
from hear_module.torch_suites import s3prl_support


def main():
  s3prl_support.prepare()
  from s3prl.run_downstream import main as run_downstream  # pylint: disable=import-outside-toplevel
  run_downstream()


if __name__ == "__main__":
  main()
