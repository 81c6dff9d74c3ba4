#!/usr/bin/env python
"""run_speech_recognition_ctc.py with --streaming on, for the command lines of the reference
run_speech_recognition_ctc_streaming.py: the train split is read as a stream (README, "Streaming").

The steps are asr_finetune.cli's; this file only runs them.
"""

from asr_finetune.cli.commands import finetune_ctc_streaming

if __name__ == "__main__":
    finetune_ctc_streaming()
