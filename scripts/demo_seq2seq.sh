#!/usr/bin/env bash
# The sequence-to-sequence demo: speak the digits corpus with espeak-ng, warm-start a tiny wav2vec2-shaped
# encoder + tiny BART-shaped decoder (random weights; the decoder's BPE tokenizer is trained on the corpus text),
# fine-tune the pair on the CPU with joint CTC-attention, evaluate with generate on held-out strings, transcribe.
# The recipe is configs/seq2seq/demo_synthetic_digits_seq2seq.json; rerunning resumes from the last checkpoint.
# SKIP_INSTALL=1 skips the install step.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
[ "${SKIP_INSTALL:-0}" = 1 ] || bash scripts/install.sh
./run_examples.sh demo_synthetic_digits_seq2seq
echo "--- held-out clips, transcribed by demo/seq2seq-digits (references: demo/digits/test/metadata.jsonl)"
python scripts/transcribe.py --model demo/seq2seq-digits demo/digits/test/test_00000{0..4}.wav 2>/dev/null
python - "$started" <<'PY'
import json, sys, time
r = json.load(open("demo/seq2seq-digits/all_results.json"))
print(f"held-out WER {r['eval_wer']:.3f}  CER {r['eval_cer']:.3f}  ({r.get('train_runtime', 0):.0f} s training, "
      f"{time.time() - int(sys.argv[1]):.0f} s in all)")
PY
