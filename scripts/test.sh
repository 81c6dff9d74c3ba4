#!/usr/bin/env bash
# Installs everything, then runs the default test suite (slow end-to-end runs: `pytest -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_lm.sh   # the n-gram LM extra: its tests build KenLM models
ruff check src scripts tests
python -m pytest -q "$@"
