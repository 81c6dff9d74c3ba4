#!/usr/bin/env python
"""Transcribe audio files, folders or manifests with a fine-tuned model (same as the `asr-transcribe` command).

The work is done by asr_finetune.transcription; see README.md ("Transcribing").
"""

from asr_finetune.transcription import main

if __name__ == "__main__":
    main()
