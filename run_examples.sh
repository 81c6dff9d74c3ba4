#!/usr/bin/env bash
# One recipe per published result, from configs/TASK/*.json (TASK: ctc, seq2seq, pretraining).
#   ./run_examples.sh list                      recipes with their published figures
#   ./run_examples.sh NAME [--nproc N] [--dry-run] [-- extra script flags]
set -euo pipefail
cd "$(dirname "$0")"
exec python -m asr_finetune.tools.recipes "$@"
