#!/usr/bin/env python
"""Export a fine-tuned model for serving: CTranslate2 Whisper or ONNX CTC (same as the `asr-export` command).

The work is done by asr_finetune.cli.export; see README.md ("Exports for serving").
"""

from asr_finetune.cli.commands import export_model

if __name__ == "__main__":
    export_model()
