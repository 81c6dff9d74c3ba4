#!/usr/bin/env bash
# The built-in demo: install, speak a digits corpus with espeak-ng, fine-tune a tiny wav2vec2-shaped CTC
# model from random weights on the CPU, evaluate it on held-out strings, transcribe a few clips.
# The recipe is configs/ctc/demo_synthetic_digits_ctc.json; rerunning resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
./run_examples.sh demo_synthetic_digits_ctc
echo "--- held-out clips, transcribed by demo/ctc-digits (references: demo/digits/test/metadata.jsonl)"
python scripts/transcribe.py --model demo/ctc-digits demo/digits/test/test_00000{0..4}.wav 2>/dev/null
python - <<'PY'
import json
r = json.load(open("demo/ctc-digits/all_results.json"))
print(f"held-out WER {r['eval_wer']:.3f}  CER {r['eval_cer']:.3f}  ({r.get('train_runtime', 0):.0f} s training)")
PY
