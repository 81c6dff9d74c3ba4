#!/usr/bin/env python
"""Save a small randomly initialised model (built from a config) to a directory, for demos and tests.

Kinds: ``wav2vec2`` (a speech encoder), ``bart-decoder`` (a BART-shaped text decoder for
create_speech_encoder_decoder.py) and ``whisper``. The last two get a byte-level BPE tokenizer trained on the
transcripts of ``--text_from`` (a dataset, as for ``--dataset_name``).
"""

from __future__ import annotations

import argparse

from asr_finetune.data.loading import load_split
from asr_finetune.data.text import TextNormalizer
from asr_finetune.tools.tiny_models import save_tiny_bart_decoder, save_tiny_wav2vec2, save_tiny_whisper


def training_texts(dataset: str, split: str, text_column: str) -> list[str]:
    """Lower-cased transcripts of a split: what the fine-tuning script will turn into labels."""
    rows = load_split(dataset, split, "audio")
    return TextNormalizer(case="lower").batch([str(text) for text in rows[text_column]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--kind", default="wav2vec2", choices=["wav2vec2", "bart-decoder", "whisper"])
    parser.add_argument("--hidden_size", type=int, default=144)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument(
        "--conv_channels", type=int, default=64, help="wav2vec2: channels of the convolutional front end"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text_from", help="bart-decoder/whisper: dataset whose transcripts train the tokenizer")
    parser.add_argument("--text_split", default="train")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--vocab_size", type=int, default=400, help="bart-decoder/whisper: BPE vocab size")
    parser.add_argument("--english_only", action="store_true", help="whisper: like the '.en' checkpoints")
    args = parser.parse_args()
    if args.kind == "wav2vec2":
        path = save_tiny_wav2vec2(
            args.output_dir,
            seed=args.seed,
            hidden_size=args.hidden_size,
            layers=args.layers,
            heads=args.heads,
            conv_channels=args.conv_channels,
        )
    else:
        if not args.text_from:
            parser.error(f"--kind {args.kind} needs --text_from DATASET to train its tokenizer on")
        texts = training_texts(args.text_from, args.text_split, args.text_column)
        sizes = {"d_model": args.hidden_size, "layers": args.layers, "heads": args.heads, "seed": args.seed}
        if args.kind == "bart-decoder":
            path = save_tiny_bart_decoder(args.output_dir, texts, vocab_size=args.vocab_size, **sizes)
        else:
            path = save_tiny_whisper(
                args.output_dir, texts, vocab_size=args.vocab_size, multilingual=not args.english_only, **sizes
            )
    print(f"Saved tiny {args.kind} to {path}")


if __name__ == "__main__":
    main()
