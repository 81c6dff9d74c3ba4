#!/usr/bin/env python
"""Save a small randomly initialised model (built from a config) to a directory, for demos and tests."""

from __future__ import annotations

import argparse

from asr_finetune.tiny_models import save_tiny_wav2vec2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--kind", default="wav2vec2", choices=["wav2vec2"])
    parser.add_argument("--hidden_size", type=int, default=144)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = save_tiny_wav2vec2(args.output_dir, seed=args.seed, hidden_size=args.hidden_size, layers=args.layers)
    print(f"Saved tiny {args.kind} to {path}")


if __name__ == "__main__":
    main()
