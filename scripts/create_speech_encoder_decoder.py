#!/usr/bin/env python
"""Warm-start a speech encoder-decoder: join a pretrained speech encoder (wav2vec2, HuBERT, ...) and a text
decoder (BART, ...) and save model + processor, ready for run_speech_recognition_seq2seq.py --model_name_or_path.

Example (the reference recipe's create_model.py step):
    python scripts/create_speech_encoder_decoder.py --encoder facebook/wav2vec2-base \\
        --decoder facebook/bart-base --output_dir wav2vec2-bart
"""

from __future__ import annotations

import argparse

from asr_finetune.logs import setup_logging
from asr_finetune.models.warm_start import create_speech_encoder_decoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True, help="speech encoder checkpoint (Hub id or dir)")
    parser.add_argument("--decoder", required=True, help="text decoder checkpoint (Hub id or dir)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--feature_extractor_name", help="default: the encoder's")
    parser.add_argument("--tokenizer_name", help="default: the decoder's")
    parser.add_argument(
        "--encoder_add_adapter",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="adapter on the encoder that shortens its output 8x (default true)",
    )
    parser.add_argument("--encoder_feat_proj_dropout", type=float, default=0.0)
    parser.add_argument("--encoder_layerdrop", type=float, default=0.0)
    parser.add_argument("--max_length", type=int, default=200, help="generation: most tokens per transcript")
    parser.add_argument("--num_beams", type=int, default=5, help="generation: beam size")
    parser.add_argument("--seed", type=int, default=0, help="for the weights that start random (adapter, ...)")
    return parser.parse_args(argv)


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    args = parse_args(argv)
    model = create_speech_encoder_decoder(
        args.encoder,
        args.decoder,
        args.output_dir,
        encoder_add_adapter=args.encoder_add_adapter,
        encoder_feat_proj_dropout=args.encoder_feat_proj_dropout,
        encoder_layerdrop=args.encoder_layerdrop,
        max_length=args.max_length,
        num_beams=args.num_beams,
        feature_extractor_name=args.feature_extractor_name,
        tokenizer_name=args.tokenizer_name,
        seed=args.seed,
    )
    total = sum(p.numel() for p in model.parameters())
    print(f"Saved {args.encoder} + {args.decoder} ({total / 1e6:.2f}M parameters) to {args.output_dir}")


if __name__ == "__main__":
    main()
