#!/usr/bin/env python
"""Serving engines side by side: a model with transformers against its export (CTranslate2 Whisper or ONNX CTC) on
the same clips, in one process, clip by clip in turn (so both see the same machine load).

    asr-export --model demo/ctc-digits --to onnx --output_dir demo/ctc-digits-onnx
    python scripts/benchmark_engines.py --model demo/ctc-digits --export demo/ctc-digits-onnx --engine onnx \\
        demo/digits/test

Prints one table: engine, audio seconds, decoding seconds, real-time factor, how many transcripts equal the
transformers engine's, and with ``--references`` (a manifest's text column, in input order) each engine's WER after
Whisper's English normaliser.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jiwer

from asr_finetune.evaluation.metrics import make_eval_normalizer
from asr_finetune.evaluation.transcription import find_inputs, make_transcriber
from asr_finetune.tools.benchmarking import markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model (transformers engine)")
    parser.add_argument("--export", required=True, help="its export (asr-export)")
    parser.add_argument("--engine", required=True, choices=("ctranslate2", "onnx"))
    parser.add_argument("--num_beams", type=int, default=None, help="seq2seq: the same beams for both engines")
    parser.add_argument("--max_clips", type=int, default=100)
    parser.add_argument("--references", default=None, help="a .jsonl manifest whose 'text' is each input's reference")
    parser.add_argument("inputs", nargs="+", help="audio files, folders or manifests")
    args = parser.parse_args()

    inputs = find_inputs(args.inputs)[: args.max_clips]
    engines = {"transformers": make_transcriber(args.model, "transformers", num_beams=args.num_beams),
               args.engine: make_transcriber(args.export, args.engine, num_beams=args.num_beams)}  # fmt: skip
    clips = [engines["transformers"].read(str(item.path)) for item in inputs]
    for engine in engines.values():  # warm-up: first-call allocations and thread pools
        engine(clips[0], timed=False)
    seconds = {name: 0.0 for name in engines}
    texts: dict[str, list[str]] = {name: [] for name in engines}
    for clip in clips:
        for name, engine in engines.items():
            start = time.perf_counter()
            texts[name].append(engine(clip, timed=False).text)
            seconds[name] += time.perf_counter() - start
    audio = sum(len(clip) for clip in clips) / engines["transformers"].sampling_rate
    same = sum(a == b for a, b in zip(texts["transformers"], texts[args.engine], strict=True))
    rows = [{"engine": name, "clips": len(clips), "audio s": round(audio, 1), "decoding s": round(seconds[name], 2),
             "real-time factor": round(seconds[name] / audio, 4),
             "same text as transformers": f"{same}/{len(clips)}" if name != "transformers" else "-"}
            for name in engines]  # fmt: skip
    if args.references:
        references = [json.loads(line)["text"] for line in Path(args.references).read_text().splitlines() if line]
        normalize = make_eval_normalizer("english")
        for row in rows:
            hypotheses = [normalize(text) for text in texts[row["engine"]]]
            row["normalised WER"] = round(jiwer.wer([normalize(t) for t in references[: len(clips)]], hypotheses), 4)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
