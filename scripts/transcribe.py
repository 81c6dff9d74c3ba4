#!/usr/bin/env python
"""Transcribe audio files with a fine-tuned model directory (or Hub id) through transformers' pipeline."""

from __future__ import annotations

import argparse
import sys

from transformers import pipeline

from asr_finetune.audio import AudioError, load_audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="output_dir of a fine-tuning run, or a Hub id")
    parser.add_argument("audio", nargs="+", help="wav / flac / ogg / mp3 files")
    args = parser.parse_args()
    asr = pipeline("automatic-speech-recognition", model=args.model)
    rate = asr.feature_extractor.sampling_rate
    failed = 0
    for path in args.audio:
        try:
            samples = load_audio(path, rate)
        except AudioError as err:  # a bad file is reported; the others are still transcribed
            failed += 1
            print(f"{path}\tERROR: {err}", file=sys.stderr)
            continue
        text = asr({"raw": samples, "sampling_rate": rate})["text"]
        print(f"{path}\t{text}")
    if failed:
        print(f"{failed} of {len(args.audio)} file(s) could not be read.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
