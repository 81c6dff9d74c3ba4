#!/usr/bin/env bash
# The CPU test suite on the stack optimum-habana 1.21 pins (transformers 4.55, accelerate <= 1.10.1, and the
# datasets that works with their huggingface-hub), in a venv beside the main install (reuses its torch).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HPU_STACK_VENV:-.venv-hpu-stack}"
[ -x "$VENV/bin/python" ] || python -m venv --system-site-packages "$VENV"
# kernels: transformers 4.55 imports it when present, and the main install's (a transformers 5 dependency) needs a
# huggingface-hub >= 1.0 this stack does not have; the last kernels for hub < 1.0 shadows it here.
"$VENV/bin/python" -m pip install -q "transformers>=4.55,<4.56" "accelerate>=1.0,<=1.10.1" "datasets>=3.0,<5" \
  "kernels>=0.4,<0.10"
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" -c "import transformers, accelerate; print('stack: transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
