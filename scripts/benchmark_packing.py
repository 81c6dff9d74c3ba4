#!/usr/bin/env python
"""Whisper packing, measured: the real Whisper tiny.en fine-tuned on the same short clips with and without
``--pack_utterances``, at equal audio seen (the same clips, the same epochs), scored on the same held-out clips.

    python scripts/benchmark_packing.py --work_dir /tmp/bench_pack            # ~8 minutes on 2 cores

Unpacked, each step takes ``--batch_size`` clips, each padded to 30 s; packed, each step takes one 30 s window of
about as many clips. Prints one table: steps, train time, padding, audio-s/s, peak RSS, held-out normalised WER.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from asr_finetune.tools.benchmarking import markdown_table, run_timed
from asr_finetune.tools.ctranslate2_whisper import cached_bundled_whisper
from asr_finetune.tools.synthetic import make_corpus

SCRIPT = Path(__file__).resolve().parent / "run_speech_recognition_seq2seq.py"


def run(name: str, work: Path, model: Path, corpus: Path, clips: int, epochs: int, extra: list[str]) -> dict:
    out = work / "runs" / f"{name}-{epochs}"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, str(SCRIPT), "--model_name_or_path", str(model),
        "--dataset_name", str(corpus), "--eval_split_name", "test", "--output_dir", str(out), "--do_train",
        "--do_eval", "--num_train_epochs", str(epochs), "--max_train_samples", str(clips), "--learning_rate", "5e-5",
        "--warmup_steps", "5", "--per_device_eval_batch_size", "20", "--predict_with_generate",
        "--generation_max_length", "40", "--save_strategy", "no", "--logging_steps", "5",
        "--dataloader_num_workers", "1", "--seed", "0", "--report_to", "none", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip
    timing = run_timed(command, name=name)
    results = json.loads((out / "all_results.json").read_text())
    steps = json.loads((out / "trainer_state.json").read_text())["global_step"]
    return {
        "run": name, "steps": steps, "train_s": round(results["train_runtime"], 1),
        "padding": results["train_padding_fraction"], "audio_s_per_s": results["train_audio_seconds_per_second"],
        "peak_rss_gb": round(timing.peak_rss_gb, 2), "normalised_wer": round(results["eval_normalized_wer"], 3),
        "wer": round(results["eval_wer"], 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=320, help="training clips seen by both runs (one epoch)")
    parser.add_argument("--batch_size", type=int, default=8, help="clips per step, unpacked")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the clips, both runs")
    args = parser.parse_args()
    corpus = args.work_dir / "words"
    if not (corpus / "test").exists():
        make_corpus(corpus, num_train=args.clips, num_validation=0, num_test=60, seed=0, kind="words", min_words=4,
                    max_words=8, progress=False)  # fmt: skip
    model = cached_bundled_whisper()
    table = [
        run("one clip a window", args.work_dir, model, corpus, args.clips, args.epochs,
            ["--per_device_train_batch_size", str(args.batch_size)]),
        run("--pack_utterances", args.work_dir, model, corpus, args.clips, args.epochs,
            ["--per_device_train_batch_size", "1", "--pack_utterances"]),
    ]  # fmt: skip
    print(f"Whisper tiny.en, {args.clips} espeak clips of 4-8 words, {args.epochs} epoch(s) per run; 60 held-out clips")
    print(markdown_table(table))
    print(f"packed / unpacked: audio-s/s {table[1]['audio_s_per_s'] / table[0]['audio_s_per_s']:.2f}x, "
          f"train time {table[1]['train_s'] / table[0]['train_s']:.2f}x")


if __name__ == "__main__":
    main()
