#!/usr/bin/env bash
# Installs everything, then runs the default test suite (slow end-to-end runs: `pytest -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
ruff check src scripts tests
python -m pytest -q "$@"
