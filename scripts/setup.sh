#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs cola_tf with its test extras. Idempotent.
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
.venv/bin/python -m pip install --quiet -e '.[test]'
# The HEAR harness (validator + heareval); numpy stays the TF stack's 2.x.
NUMPY=$(.venv/bin/python -c "import numpy; print(numpy.__version__)")
.venv/bin/python -m pip install --quiet -r requirements-hear.txt "numpy==$NUMPY"
.venv/bin/python -m pip install --quiet --no-deps heareval==2021.1.3
.venv/bin/python -m pip install --quiet --no-deps --ignore-requires-python hearvalidator==2021.0.6
