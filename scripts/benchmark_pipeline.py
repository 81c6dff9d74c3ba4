#!/usr/bin/env python
"""Data-pipeline benchmark: decoding speed, padding and training throughput per batching strategy, peak memory.

Builds a corpus with a long-tailed duration spread from real espeak-ng speech (short clips concatenated),
then prints one table measured in one run, side by side:

    python scripts/benchmark_pipeline.py --work_dir /tmp/bench            # ~4 minutes on 2 cores
    python scripts/benchmark_pipeline.py --work_dir /tmp/bench --quick    # 300 utterances, 20 steps
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from transformers.trainer_pt_utils import get_length_grouped_indices

from asr_finetune.data.audio import audio_info, load_audio
from asr_finetune.data.local import read_manifest
from asr_finetune.data.sampling import DurationBatchSampler
from asr_finetune.files import write_jsonl
from asr_finetune.tools.synthetic import make_corpus
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2

SCRIPT = Path(__file__).resolve().parent / "run_speech_recognition_ctc.py"
BUDGET = 60.0  # seconds of padded audio per batch for the bucket row: bounds memory whatever the corpus
STRATEGIES = {
    "random batches": [],
    "group_by_length": ["--group_by_length"],
    "duration buckets": ["--max_batch_duration", str(BUDGET)],
}


def long_tailed_corpus(root: Path, num_utterances: int, seed: int) -> Path:
    """``num_utterances`` WAVs, each 1 + Geometric(0.35) espeak clips joined: many short, a long tail."""
    clips_dir = root / "clips"
    make_corpus(
        clips_dir, num_train=200, num_validation=0, num_test=0, min_words=1, max_words=3, seed=seed, progress=False
    )
    clips = read_manifest(clips_dir / "train" / "metadata.jsonl", "audio")
    rng = random.Random(seed)
    out_dir = root / f"long_tailed_{num_utterances}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_utterances):
        count = 1
        while rng.random() > 0.35 and count < 25:
            count += 1
        parts = [rng.choice(clips) for _ in range(count)]
        path = out_dir / f"utt_{index:06d}.wav"
        if not path.exists():
            audio = np.concatenate([sf.read(part["audio"], dtype="float32")[0] for part in parts])
            sf.write(path, audio, 22_050)
        rows.append({"audio": path.name, "text": " ".join(part["text"] for part in parts)})
    write_jsonl(rows, out_dir / "train.jsonl")
    return out_dir / "train.jsonl"


def decode_speed(paths: list[str]) -> tuple[float, float]:
    """(decode+resample to 16 kHz, header read) speed as multiples of real time, on one core."""
    started = time.perf_counter()
    seconds = sum(len(load_audio(path, 16_000)) / 16_000 for path in paths)
    decode = seconds / (time.perf_counter() - started)
    started = time.perf_counter()
    header_seconds = sum(audio_info(path).duration for path in paths)
    return decode, header_seconds / (time.perf_counter() - started)


def start_up_check_speed(paths: list[str]) -> dict[str, float]:
    """Seconds of audio checked per second by each --audio_check level (one core), as multiples of real time."""
    seconds = sum(audio_info(path).duration for path in paths)
    speeds = {}
    for level, check in (
        ("header", lambda path: audio_info(path)),
        ("tail", lambda path: audio_info(path, check_tail=True)),
        ("full", lambda path: load_audio(path, audio_info(path).sampling_rate)),
    ):
        started = time.perf_counter()
        for path in paths:
            check(path)
        speeds[level] = seconds / (time.perf_counter() - started)
    return speeds


def print_checks(checks: dict[str, dict[str, float]]) -> None:
    print("| start-up check (--audio_check), one core | header | tail (default) | full |")
    print("| --- | --- | --- | --- |")
    for kind, speeds in checks.items():
        cells = [f"{speeds[level]:,.0f}x real time" for level in ("header", "tail", "full")]
        print(f"| {kind} | " + " | ".join(cells) + f" | (tail takes {speeds['header'] / speeds['tail']:.2f}x the "
              "header's time)")
    print()


def flac_copies(paths: list[str], out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in paths:
        target = out_dir / (Path(path).stem + ".flac")
        if not target.exists():
            samples, rate = sf.read(path, dtype="float32")
            sf.write(target, samples, rate)
        copies.append(str(target))
    return copies


def padding_fraction(durations: list[float], batches: list[list[int]]) -> float:
    real = sum(durations[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(durations[i] for i in batch) for batch in batches)
    return 1.0 - real / padded


def static_padding(durations: list[float], batch_size: int, seed: int) -> dict[str, float]:
    order = list(range(len(durations)))
    random.Random(seed).shuffle(order)
    grouped = get_length_grouped_indices(durations, batch_size)
    buckets = list(DurationBatchSampler(durations, max_batch_duration=BUDGET, seed=seed))

    def chunks(indices: list[int]) -> list[list[int]]:
        return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]

    return {
        "random batches": padding_fraction(durations, chunks(order)),
        "group_by_length": padding_fraction(durations, chunks(grouped)),
        "duration buckets": padding_fraction(durations, buckets),
    }


def train_run(manifest: Path, model: Path, output_dir: Path, extra: list[str], steps: int, batch_size: int) -> dict:
    """Run the CTC script for ``steps`` steps in a child process; its train metrics plus its peak RSS."""
    args = [
        sys.executable,
        str(SCRIPT),
        "--model_name_or_path",
        str(model),
        "--dataset_name",
        str(manifest),
        "--train_split_name",
        "train",
        "--output_dir",
        str(output_dir),
        "--do_train",
        "--max_steps",
        str(steps),
        "--per_device_train_batch_size",
        str(batch_size),
        "--learning_rate",
        "1e-3",
        "--save_strategy",
        "no",
        "--logging_steps",
        str(steps),
        "--freeze_feature_encoder",
        "false",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--dataloader_num_workers",
        "1",
        "--resume_from_checkpoint",
        "false",
        "--max_duration_in_seconds",
        "60",
        *extra,
    ]
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the largest child so far
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            errors.seek(0)
            raise RuntimeError(f"training run failed:\n{' '.join(args)}\n{errors.read()[-3000:]}")
    metrics = json.loads((output_dir / "train_results.json").read_text())
    metrics["peak_rss_mb"] = usage.ru_maxrss / 1024
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", required=True)
    parser.add_argument("--num_utterances", type=int, default=800)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer utterances and steps")
    parser.add_argument("--checks_only", action="store_true", help="only the --audio_check start-up cost table")
    args = parser.parse_args()
    if args.quick:
        args.num_utterances, args.steps = 300, 20
    work = Path(args.work_dir)
    manifest = long_tailed_corpus(work, args.num_utterances, args.seed)
    rows = read_manifest(manifest, "audio")
    paths = [row["audio"] for row in rows]
    flac = flac_copies(paths, work / "flac")
    start_up_check_speed(paths + flac)  # warm the page cache: the levels are compared on equal terms
    checks = {"wav": start_up_check_speed(paths), "flac": start_up_check_speed(flac)}
    if args.checks_only:
        print_checks(checks)
        return
    big_manifest = long_tailed_corpus(work, args.num_utterances * 4, args.seed + 1)
    model = save_tiny_wav2vec2(work / "tiny-wav2vec2", hidden_size=144, layers=4)
    durations = [audio_info(path).duration for path in paths]
    decode_x, header_x = decode_speed(paths)
    padding = static_padding(durations, args.batch_size, args.seed)

    results = {}
    for name, extra in STRATEGIES.items():
        results[name] = train_run(
            manifest, model, work / f"run-{name.replace(' ', '_')}", extra, args.steps, args.batch_size
        )
    scaled = train_run(
        big_manifest, model, work / "run-buckets-4x", STRATEGIES["duration buckets"], args.steps, args.batch_size
    )

    total = sum(durations)
    print(
        f"\ncorpus: {len(durations)} utterances, {total / 60:.1f} min, durations {min(durations):.1f}-"
        f"{max(durations):.1f} s (median {sorted(durations)[len(durations) // 2]:.1f} s, long tail)"
    )
    print(f"decode+resample (soundfile + soxr, 22.05->16 kHz, one core): {decode_x:,.0f}x real time")
    print(f"header read (duration only):                                 {header_x:,.0f}x real time\n")
    print_checks(checks)
    print(
        f"| batching ({args.batch_size} per batch; buckets: {BUDGET:.0f} s padded; {args.steps} steps) "
        "| padding (whole epoch) | padding (trained) "
        "| audio s / s | vs random | loader wait | peak RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = results["random batches"]["train_audio_seconds_per_second"]
    for name, metrics in results.items():
        speed = metrics["train_audio_seconds_per_second"]
        print(
            f"| {name} | {padding[name]:.1%} | {metrics['train_padding_fraction']:.1%} | {speed:.1f} "
            f"| {speed / base:.2f}x | {metrics['train_loader_wait_share']:.1%} | {metrics['peak_rss_mb']:.0f} MB |"
        )
    print(
        f"\npeak RSS with duration buckets: {results['duration buckets']['peak_rss_mb']:.0f} MB on "
        f"{len(durations)} utterances, {scaled['peak_rss_mb']:.0f} MB on {4 * len(durations)} (same steps)"
    )


if __name__ == "__main__":
    main()
