#!/usr/bin/env python
"""Build a KenLM word n-gram for CTC decoding (same as the `asr-build-ngram-lm` command).

The work is done by asr_finetune.cli.ngram_lm; see README.md ("n-gram language model for CTC").
"""

from asr_finetune.cli.commands import build_ngram_lm

if __name__ == "__main__":
    build_ngram_lm()
