"""Make a synthetic espeak-ng speech corpus in Hugging Face audiofolder layout.

Example:
    python scripts/make_synthetic_corpus.py --output_dir data/digits \\
        --num_train 400 --num_validation 50 --num_test 50 --languages en de
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from asr_finetune.tools.synthetic import KINDS, make_corpus, make_unlabeled_corpus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_train", type=int, default=400)
    parser.add_argument("--num_validation", type=int, default=50)
    parser.add_argument("--num_test", type=int, default=50, help="ignored with --unlabeled")
    parser.add_argument("--kind", choices=KINDS, default="digits")
    parser.add_argument("--languages", nargs="+", default=["en"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_words", type=int, default=2)
    parser.add_argument("--max_words", type=int, default=5)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument(
        "--unlabeled",
        action="store_true",
        help="write metadata with file_name only (train and validation splits)",
    )
    parser.add_argument("--no_progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common: dict[str, Any] = {
        "num_validation": args.num_validation,
        "kind": args.kind,
        "languages": args.languages,
        "seed": args.seed,
        "min_words": args.min_words,
        "max_words": args.max_words,
        "num_workers": args.num_workers,
        "progress": not args.no_progress,
    }
    if args.unlabeled:
        summary = make_unlabeled_corpus(args.output_dir, num_files=args.num_train, **common)
    else:
        summary = make_corpus(args.output_dir, num_train=args.num_train, num_test=args.num_test, **common)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
