#!/usr/bin/env bash
# The sequence-to-sequence demo: speak a corpus of random word sequences with espeak-ng, warm-start a tiny
# wav2vec2-shaped encoder + tiny BART-shaped decoder (random weights; the decoder's BPE tokenizer is trained on
# the corpus text), fine-tune the pair on the CPU, evaluate with generate on held-out sentences, transcribe.
# Rerunning it resumes from the last checkpoint. SKIP_INSTALL=1 skips the install step.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
[ "${SKIP_INSTALL:-0}" = 1 ] || bash scripts/install.sh
python scripts/make_synthetic_corpus.py --kind words --output_dir demo/words \
  --num_train 2000 --num_validation 50 --num_test 100 --seed 0 --no_progress >/dev/null
[ -f demo/tiny-encoder/config.json ] || python scripts/create_tiny_model.py --output_dir demo/tiny-encoder \
  --conv_channels 32
[ -f demo/tiny-bart/config.json ] || python scripts/create_tiny_model.py --kind bart-decoder \
  --text_from demo/words --output_dir demo/tiny-bart --hidden_size 144 --layers 2 --vocab_size 1000
[ -f demo/tiny-wav2vec2-bart/config.json ] || python scripts/create_speech_encoder_decoder.py \
  --encoder demo/tiny-encoder --decoder demo/tiny-bart --output_dir demo/tiny-wav2vec2-bart
python scripts/run_speech_recognition_seq2seq.py configs/demo_synthetic_words_seq2seq.json
echo "--- held-out clips, transcribed by demo/seq2seq-words (reference in demo/words/test/metadata.jsonl):"
python scripts/transcribe.py --model demo/seq2seq-words demo/words/test/test_00000{0..4}.wav 2>/dev/null
python - "$started" <<'PY'
import json, sys, time
r = json.load(open("demo/seq2seq-words/all_results.json"))
print(f"held-out WER {r['eval_wer']:.3f}  CER {r['eval_cer']:.3f}  ({r.get('train_runtime', 0):.0f} s training, "
      f"{time.time() - int(sys.argv[1]):.0f} s in all)")
PY
