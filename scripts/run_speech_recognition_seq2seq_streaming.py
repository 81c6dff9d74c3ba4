#!/usr/bin/env python
"""run_speech_recognition_seq2seq.py with --streaming on: the train split is read as a stream (README, "Streaming").

The steps are asr_finetune.cli's; this file only runs them.
"""

from asr_finetune.cli.commands import finetune_seq2seq_streaming

if __name__ == "__main__":
    finetune_seq2seq_streaming()
