#!/usr/bin/env python
"""Fine-tune a CTC speech recognition model (wav2vec2, HuBERT, XLS-R, WavLM, ...) with the command lines of
transformers' run_speech_recognition_ctc.py. Same as the `asr-finetune-ctc` command; see README.md.

The steps are asr_finetune.cli's; this file only runs them.
"""

from asr_finetune.cli.commands import finetune_ctc

if __name__ == "__main__":
    finetune_ctc()
