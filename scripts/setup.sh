#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs cola_tf with its test and HEAR extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
# espeak-ng: speech for scripts/make_speech_commands_synth.py (the experiment needs it; the
# tests build the same layout from numpy audio without it).
if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng >/dev/null; } \
    || echo "setup: could not install espeak-ng; continuing without it" >&2
fi
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,hear]'
# The HEAR harness and the torch suites (X-ARES, s3prl): their own metadata pins numpy 1.19,
# Python < 3.9, transformers or huggingface_hub >= 1 (which s3prl's runner cannot import), so
# without their dependencies; the [hear] extra above holds what they need.
.venv/bin/python -m pip install --quiet --no-deps heareval==2021.1.3 xares==0.1.3 s3prl==0.4.18
.venv/bin/python -m pip install --quiet --no-deps --ignore-requires-python hearvalidator==2021.0.6
