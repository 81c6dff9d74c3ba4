#!/usr/bin/env python
"""Pretrain a wav2vec2 model on unlabeled audio with Accelerate, with the command lines of transformers'
run_wav2vec2_pretraining_no_trainer.py. Same as the `asr-pretrain-wav2vec2` command; see README.md.

The steps are asr_finetune.cli's; this file only runs them.
"""

from asr_finetune.cli.commands import pretrain_wav2vec2

if __name__ == "__main__":
    pretrain_wav2vec2()
