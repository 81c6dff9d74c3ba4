#!/usr/bin/env python
"""Transcribe audio files with a fine-tuned model directory (or Hub id) through transformers' pipeline."""

from __future__ import annotations

import argparse

from transformers import pipeline

from asr_finetune.audio import load_audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="output_dir of a fine-tuning run, or a Hub id")
    parser.add_argument("audio", nargs="+", help="wav / flac / ogg / mp3 files")
    args = parser.parse_args()
    asr = pipeline("automatic-speech-recognition", model=args.model)
    rate = asr.feature_extractor.sampling_rate
    for path in args.audio:
        text = asr({"raw": load_audio(path, rate), "sampling_rate": rate})["text"]
        print(f"{path}\t{text}")


if __name__ == "__main__":
    main()
