"""Rebuild the real-speech benchmark corpus from its public sources (the audio stays out of this repository).

    git clone https://github.com/somtts/voicebuilding_seminar_16      # one speaker, 892 CMU ARCTIC prompts
    git clone https://github.com/coqui-ai/TTS --depth 1                # 32 LJSpeech clips in tests/data/ljspeech
    python scripts/build_real_corpus.py --output_dir data/real \\
        --prompts voicebuilding_seminar_16/data --general TTS/tests/data/ljspeech

``train`` / ``validation`` / ``test`` hold one speaker's prompts, drawn at random (``--seed``) so that no test
sentence is trained on; ``general`` holds other speakers, never trained on. Our scripts read it with
``--dataset_name data/real``. Instead of ``--prompts``, ``--voice_ktn TEXTGRID FLAC`` cuts one long recording
timed by a chronological Praat TextGrid (github.com/ioonaa/voice-ktn-data and its release's voice-ktn.flac).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asr_finetune.tools.real_corpus import build_ljspeech, build_prompt_corpus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True, type=Path)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompts", type=Path, help="a folder with wav/NAME.wav and text/NAME.txt")
    source.add_argument("--voice_ktn", nargs=2, type=Path, metavar=("TEXTGRID", "FLAC"),
                        help="one recording and the chronological TextGrid that times its prompts")
    parser.add_argument("--train", type=int, default=400, help="training prompts")
    parser.add_argument("--validation", type=int, default=50, help="validation prompts (best-checkpoint choice)")
    parser.add_argument("--test", type=int, default=50, help="held-out prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--general", nargs="+", type=Path, default=[],
                        help="LJSpeech-layout folders (metadata.csv, wavs/) or metadata files beside wavs/")
    parser.add_argument("--general_clips", type=int, default=None, help="at most this many clips from each")
    args = parser.parse_args(argv)
    if not (args.prompts or args.voice_ktn or args.general):
        parser.error("give --prompts DIR or --voice_ktn TEXTGRID FLAC, and/or --general DIR ...")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    summary = {}
    sizes = {"test": args.test, "validation": args.validation, "train": args.train}
    if args.prompts:
        summary.update(build_prompt_corpus(args.output_dir, sizes, folder=args.prompts, seed=args.seed))
    elif args.voice_ktn:
        textgrid, flac = args.voice_ktn
        summary.update(build_prompt_corpus(args.output_dir, sizes, textgrid=textgrid, flac=flac, seed=args.seed))
    if args.general:
        summary["general"] = build_ljspeech(args.general, args.output_dir, limit=args.general_clips)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    from asr_finetune.cli.run import run_cli

    run_cli(main)
