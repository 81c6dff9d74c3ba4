#!/usr/bin/env bash
# The built-in demo: install, speak a digits corpus with espeak-ng, fine-tune a tiny wav2vec2-shaped CTC
# model from random weights on the CPU, evaluate it on held-out speakers/strings, transcribe a few clips.
# Rerunning it resumes from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python scripts/make_synthetic_corpus.py --output_dir demo/digits --num_train 1000 --num_validation 50 --num_test 100 --seed 0 >/dev/null
python scripts/create_tiny_model.py --output_dir demo/tiny-wav2vec2
python scripts/run_speech_recognition_ctc.py configs/demo_synthetic_digits_ctc.json
echo "--- held-out clips, transcribed by demo/ctc-digits (reference in demo/digits/test/metadata.jsonl):"
python scripts/transcribe.py --model demo/ctc-digits demo/digits/test/test_00000{0..4}.wav 2>/dev/null
python - <<'PY'
import json
r = json.load(open("demo/ctc-digits/all_results.json"))
print(f"held-out WER {r['eval_wer']:.3f}  CER {r['eval_cer']:.3f}  ({r.get('train_runtime', 0):.0f} s training)")
PY
