#!/usr/bin/env python
"""Write the splits of a local dataset (audiofolder or manifests) as streamable shards for --streaming:
parquet with the audio embedded (the Hub's format) or WebDataset tar.

    python scripts/make_shards.py --dataset_name demo/digits --output_dir demo/digits-shards --num_shards 8
"""

from __future__ import annotations

import argparse

from asr_finetune.cli.run import run_cli
from asr_finetune.data.shards import FORMATS, local_rows, write_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_name", required=True, help="local dataset dir (audiofolder or manifests)")
    parser.add_argument("--output_dir", required=True, help="shards go to OUTPUT_DIR/SPLIT/")
    parser.add_argument("--splits", nargs="+", default=["train", "test"], help="splits to write")
    parser.add_argument("--num_shards", type=int, default=8, help="files per split (fewer for a small split)")
    parser.add_argument("--format", choices=FORMATS, default="parquet")
    parser.add_argument("--text_column_name", default="text")
    args = parser.parse_args()
    for split in args.splits:
        rows = local_rows(args.dataset_name, split)
        files = write_shards(rows, args.output_dir, split, min(args.num_shards, len(rows)), args.format,
                             text_column=args.text_column_name)
        print(f"{split}: {len(rows)} rows in {len(files)} {args.format} file(s) under {files[0].parent}")


if __name__ == "__main__":
    run_cli(main)
