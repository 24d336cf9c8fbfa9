#!/usr/bin/env bash
# The pretrain-vs-random experiment on generated speech (see run.py beside this file):
#   bash experiments/generated_speech/run.sh [--out runs/generated_speech] [--seeds 3] ...
# Sets up the venv (and espeak-ng) first; writes results.md/.csv and PNG plots to --out.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
exec .venv/bin/python experiments/generated_speech/run.py "$@"
