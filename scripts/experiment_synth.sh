#!/usr/bin/env bash
# The pretrain-vs-random experiment on generated speech (see cola_tf/experiment_synth.py):
#   bash scripts/experiment_synth.sh [--out runs/experiment_synth] [--seeds 3] ...
# Sets up the venv (and espeak-ng) first; writes results.md/.csv and PNG plots to --out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m cola_tf.experiment_synth "$@"
