#!/usr/bin/env python
"""Fine-tune Whisper or a warm-started speech encoder-decoder (wav2vec2 + BART) with the command lines of
transformers' run_speech_recognition_seq2seq.py. Same as the `asr-finetune-seq2seq` command; see README.md.

The steps are asr_finetune.cli's; this file only runs them.
"""

from asr_finetune.cli.commands import finetune_seq2seq

if __name__ == "__main__":
    finetune_seq2seq()
