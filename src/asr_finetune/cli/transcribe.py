"""``asr-transcribe`` / ``scripts/transcribe.py``: transcribe audio files, folders or manifests with a fine-tuned
model (the work is :mod:`asr_finetune.evaluation.transcription`'s)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from asr_finetune.errors import UsageError
from asr_finetune.evaluation.transcription import (
    ENGINES,
    OUTPUT_FORMATS,
    find_inputs,
    make_transcriber,
    prepare_output_dir,
    transcribe_all,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``asr-transcribe``."""
    parser = argparse.ArgumentParser(
        prog="asr-transcribe",
        description="Transcribe audio files, folders or manifests with a fine-tuned model (CTC or seq2seq).",
    )
    parser.add_argument("--model", required=True, help="output_dir of a fine-tuning run, or a Hub id")
    parser.add_argument("--output_format", default="txt", choices=OUTPUT_FORMATS,
                        help="txt: the text; json: text, segments and CTC words with times, real-time factor; "
                        "srt: subtitles (Whisper segments, CTC words grouped at pauses)")  # fmt: skip
    parser.add_argument("--output_dir", default=None,
                        help="write one <input name>.<format> per input here (default: print to stdout)")  # fmt: skip
    parser.add_argument("--audio_column_name", default="audio", help="audio path column of manifest inputs")
    parser.add_argument("--torch_dtype", default=None, choices=["auto", "float32", "float16", "bfloat16"],
                        help="dtype to run the model in (default float32; fp16 checkpoints are upcast)")  # fmt: skip
    parser.add_argument("--num_beams", type=int, default=None, help="beam width for seq2seq models")
    parser.add_argument("--engine", default="transformers", choices=ENGINES,
                        help="transformers (a model or output dir), or an export of asr-export: ctranslate2 "
                        "(Whisper) or onnx (CTC)")  # fmt: skip
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files (wav, flac, ogg, mp3), folders of them, or manifests (.jsonl, .csv, ...)",
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The command line; returns the exit status: 0, 1 when some file failed, 2 for a usage mistake."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parse_args(argv)
    try:
        inputs = find_inputs(args.inputs, args.audio_column_name)
        output_dir = Path(args.output_dir) if args.output_dir else None
        if output_dir is not None:
            prepare_output_dir(output_dir, inputs, args.output_format)
        started = time.perf_counter()
        transcriber = make_transcriber(args.model, args.engine, args.torch_dtype, args.num_beams)
    except UsageError as error:
        print(f"asr-transcribe: {error}", file=err)
        return 2
    print(f"Loaded {args.model} in {time.perf_counter() - started:.1f} s; {len(inputs)} input file(s).", file=err)
    totals = transcribe_all(transcriber, inputs, args.output_format, output_dir, out, err, not args.no_progress)
    print(totals.summary(), file=err)
    return 1 if totals.failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``asr-transcribe``."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
