"""``asr-export`` / ``scripts/export_model.py``: a fine-tuned model as a CTranslate2 Whisper or an ONNX CTC model,
for ``asr-transcribe --engine`` and other serving runtimes (the work is :mod:`asr_finetune.models.exports`'s)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from asr_finetune.logs import setup_logging
from asr_finetune.models.exports import FORMATS, export_model

logger = logging.getLogger("export_model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-export",
        description="Export a fine-tuned model for serving: Whisper to CTranslate2 (faster-whisper's format), CTC "
        "models to ONNX. Needs pip install 'asr-finetune[export]'.",
    )
    parser.add_argument("--model", required=True, help="output_dir of a fine-tuning run (or a model folder)")
    parser.add_argument("--to", required=True, choices=FORMATS)
    parser.add_argument("--output_dir", required=True, help="folder to write (replaced whole when it exists)")
    parser.add_argument("--quantization", default=None,
                        help="CTranslate2 weights: float32 (default), float16, int8, int8_float16, ...")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    setup_logging()
    args = build_parser().parse_args(argv)
    return export_model(args.model, args.to, args.output_dir, args.quantization)


if __name__ == "__main__":
    from asr_finetune.cli.run import run_cli

    run_cli(main)
