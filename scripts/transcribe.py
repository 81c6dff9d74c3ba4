#!/usr/bin/env python
"""Transcribe audio files of any length with a fine-tuned model directory (or Hub id): CTC or seq2seq.

Whisper decodes recordings longer than 30 s with sequential long-form generation, CTC models in overlapping
chunks (asr_finetune.longform); a 10-minute file is transcribed whole.
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

from asr_finetune import longform
from asr_finetune.audio import AudioError, load_audio
from asr_finetune.modeling import dtype_kwargs, weights_dtype


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="output_dir of a fine-tuning run, or a Hub id")
    parser.add_argument(
        "--torch_dtype", default=None, choices=["auto", "float32", "float16", "bfloat16"],
        help="dtype to run the model in (default float32; fp16 checkpoints are upcast)",
    )  # fmt: skip
    parser.add_argument("--num_beams", type=int, default=None, help="beam width for seq2seq models")
    parser.add_argument("audio", nargs="+", help="wav / flac / ogg / mp3 files")
    args = parser.parse_args(argv)
    dtype = weights_dtype(args.torch_dtype, training=False)
    config = AutoConfig.from_pretrained(args.model)
    model_class = AutoModelForSpeechSeq2Seq if getattr(config, "is_encoder_decoder", False) else AutoModelForCTC
    model = model_class.from_pretrained(args.model, **dtype_kwargs(dtype))
    processor = AutoProcessor.from_pretrained(args.model)
    rate = getattr(processor, "feature_extractor", processor).sampling_rate
    generation = {"num_beams": args.num_beams} if args.num_beams else {}
    failed = 0
    with torch.no_grad():
        for path in args.audio:
            try:
                samples = load_audio(path, rate)
            except AudioError as err:  # a bad file is reported; the others are still transcribed
                failed += 1
                print(f"{path}\tERROR: {err}", file=sys.stderr)
                continue
            print(f"{path}\t{longform.transcribe(model, processor, samples, **generation)}", flush=True)
    if failed:
        print(f"{failed} of {len(args.audio)} file(s) could not be read.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
