#!/usr/bin/env python
"""Transcribe audio files, folders or manifests with a fine-tuned model (same as the `asr-transcribe` command).

The work is done by asr_finetune.cli.transcribe; see README.md ("Transcribing").
"""

from asr_finetune.cli.transcribe import main

if __name__ == "__main__":
    main()
