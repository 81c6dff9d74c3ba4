"""``asr-build-ngram-lm`` / ``scripts/build_ngram_lm.py``: a word n-gram LM for CTC decoding, from text files or a
dataset split, normalised as CTC training normalises transcripts (the work is
:mod:`asr_finetune.evaluation.ngram_lm`'s)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from asr_finetune.cli.run import run_cli
from asr_finetune.data.loading import check_columns, load_split
from asr_finetune.errors import DataError, UsageError
from asr_finetune.evaluation.ngram_lm import build_ngram_lm
from asr_finetune.logs import setup_logging
from asr_finetune.models.loading import find_tokenizer
from asr_finetune.tasks.ctc import normalizer_for

logger = logging.getLogger("build_ngram_lm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-build-ngram-lm",
        description="Build a KenLM word n-gram (lmplz + build_binary) for CTC decoding: pass the folder it writes "
        "to the CTC script's --lm_path. Needs the LM extra: bash scripts/install_lm.sh.",
    )
    parser.add_argument("--output_dir", required=True, help="folder to write (lm.arpa, lm.bin, unigrams.txt)")
    parser.add_argument("--order", type=int, default=3, help="n-gram order, 2 to 6 (default 3)")
    parser.add_argument("--prune", type=int, nargs="*", default=None,
                        help="lmplz --prune thresholds per order, e.g. 0 1 1 (default: keep every n-gram)")
    source = parser.add_argument_group("text: files, or a dataset split as the fine-tuning scripts read it")
    source.add_argument("--text_file", nargs="*", default=[], help="plain text files, one sentence a line")
    source.add_argument("--dataset_name", help="a local dataset folder or a Hub id")
    source.add_argument("--dataset_config_name", default=None)
    source.add_argument("--train_split_name", default="train", help="split (expression) whose text to use")
    source.add_argument("--text_column_name", default="text")
    source.add_argument("--audio_column_name", default="audio")
    text = parser.add_argument_group("normalisation (as CTC training: the LM's words must be the model's)")
    text.add_argument("--model_name_or_path", default=None,
                      help="a fine-tuned CTC model: its tokenizer's case convention wins over --do_lower_case")
    text.add_argument("--chars_to_ignore", nargs="*", default=None, help="characters removed, as in training")
    text.add_argument("--do_lower_case", default="true", choices=["true", "false"])
    return parser


def read_texts(args: argparse.Namespace) -> list[str]:
    """The raw sentences of the text files and the dataset split asked for."""
    texts: list[str] = []
    for name in args.text_file:
        path = Path(name)
        try:
            texts += path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"--text_file {path}: cannot read it as UTF-8 text ({err}).") from None
    if args.dataset_name:
        split = load_split(args.dataset_name, args.train_split_name, args.audio_column_name,
                           text_column=args.text_column_name, config_name=args.dataset_config_name)  # fmt: skip
        check_columns(split.column_names, {args.text_column_name: "--text_column_name"},
                      f"{args.dataset_name} split {args.train_split_name!r}")  # fmt: skip
        texts += [text or "" for text in split[args.text_column_name]]
    if not args.text_file and not args.dataset_name:
        raise UsageError("Give the text: --text_file FILE ... or --dataset_name (with --train_split_name).")
    return texts


def main(argv: Sequence[str] | None = None) -> Path:
    setup_logging()
    args = build_parser().parse_args(argv)
    tokenizer = find_tokenizer(args.model_name_or_path) if args.model_name_or_path else None
    normalizer = normalizer_for(tokenizer, args.chars_to_ignore, args.do_lower_case == "true", None)
    texts = normalizer.batch(read_texts(args))
    path = build_ngram_lm(texts, args.order, args.output_dir, args.prune)
    logger.info("Decode with it: --lm_path %s (CTC fine-tuning or evaluation).", Path(args.output_dir))
    return path


if __name__ == "__main__":
    run_cli(main)
