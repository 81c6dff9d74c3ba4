#!/usr/bin/env python
"""The memory allocator, measured: the same CTC training run started on tcmalloc (the default: the command restarts
itself once, before importing torch) and on glibc's malloc (``ASR_FINETUNE_MALLOC=system``), interleaved, plus the
wall time of ``--help`` (which never restarts).

    python scripts/benchmark_allocator.py --work_dir /tmp/bench_alloc --repeats 2    # ~6 minutes on 2 cores

Prints one table: per allocator, the median wall, peak RSS and training samples/s over the repeats, and the
``--help`` wall; then the tcmalloc/system ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from asr_finetune.tools.benchmarking import markdown_table, run_timed
from asr_finetune.tools.synthetic import make_corpus
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2

SCRIPT = Path(__file__).resolve().parent / "run_speech_recognition_ctc.py"
ALLOCATORS = ("tcmalloc", "system")


def train(allocator: str, work: Path, model: Path, corpus: Path, epochs: int, repeat: int) -> dict:
    out = work / "runs" / f"{allocator}-{repeat}"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, str(SCRIPT), "--model_name_or_path", str(model), "--dataset_name", str(corpus),
        "--train_split_name", "train", "--eval_split_name", "test", "--output_dir", str(out), "--do_train",
        "--num_train_epochs", str(epochs), "--per_device_train_batch_size", "16", "--learning_rate", "3e-3",
        "--train_sampling_strategy", "group_by_length", "--save_strategy", "no", "--logging_steps", "10",
        "--seed", "0", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    timing = run_timed(command, env={**os.environ, "ASR_FINETUNE_MALLOC": allocator}, name=allocator)
    results = json.loads((out / "all_results.json").read_text())
    return {"wall_s": timing.wall_s, "peak_rss_gb": timing.peak_rss_gb,
            "samples_per_s": results["train_samples_per_second"]}  # fmt: skip


def help_wall(allocator: str) -> float:
    command = [sys.executable, str(SCRIPT), "--help"]
    return run_timed(command, env={**os.environ, "ASR_FINETUNE_MALLOC": allocator}, name="--help").wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2, help="runs per allocator, interleaved")
    parser.add_argument("--clips", type=int, default=400, help="training clips")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    corpus = args.work_dir / "digits"
    if not (corpus / "test").exists():
        make_corpus(corpus, num_train=args.clips, num_validation=0, num_test=20, seed=0, progress=False)
    model = save_tiny_wav2vec2(args.work_dir / "model")
    runs: dict[str, list[dict]] = {name: [] for name in ALLOCATORS}
    helps: dict[str, list[float]] = {name: [] for name in ALLOCATORS}
    for repeat in range(args.repeats):
        for name in ALLOCATORS:
            runs[name].append(train(name, args.work_dir, model, corpus, args.epochs, repeat))
            helps[name].append(help_wall(name))
    rows = []
    for name in ALLOCATORS:
        median = {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
        rows.append({"allocator": name, "wall_s": round(median["wall_s"], 1),
                     "peak_rss_gb": round(median["peak_rss_gb"], 2),
                     "samples_per_s": round(median["samples_per_s"], 2),
                     "help_wall_s": round(statistics.median(helps[name]), 2)})  # fmt: skip
    print(markdown_table(rows))
    tc, system = rows
    for key in ("wall_s", "peak_rss_gb", "samples_per_s", "help_wall_s"):
        print(f"- {key}: tcmalloc / system = {tc[key] / system[key]:.2f}x")


if __name__ == "__main__":
    main()
