#!/usr/bin/env python
"""run_speech_recognition_seq2seq.py with --streaming on, for the command lines of the reference
run_speech_recognition_seq2seq_streaming.py: the train split is read as a stream (README, "Streaming"); every other
flag is run_speech_recognition_seq2seq.py's.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from asr_finetune.run import run_cli

SCRIPT = Path(__file__).with_name("run_speech_recognition_seq2seq.py")
main = runpy.run_path(str(SCRIPT), run_name=SCRIPT.stem)["main"]

if __name__ == "__main__":
    run_cli(lambda: main(streaming=True))
