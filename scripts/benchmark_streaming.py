#!/usr/bin/env python
"""Streaming at scale, measured: the same training steps on 1x and 8x the shards (memory and disk must not grow
with the corpus), and the same data map-style (audio seconds per second must stay within 10%).

    python scripts/benchmark_streaming.py --work_dir /tmp/bench_stream --steps 150   # ~5 minutes on 2 cores

Each run is a separate process under /usr/bin/time (peak RSS) with its own empty HF cache (disk written = output
dir + cache). The three runs go round ``--repeats`` times, interleaved, so a drift of the shared machine touches
all three alike; the table shows each run's median audio-s/s (with its range) and its largest peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from asr_finetune.data.shards import local_rows, write_shards
from asr_finetune.tools.benchmarking import markdown_table, run_timed
from asr_finetune.tools.synthetic import make_corpus
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2

SCRIPTS = Path(__file__).resolve().parent


def disk_bytes(*paths: Path) -> int:
    return sum(f.stat().st_size for path in paths if path.exists() for f in path.rglob("*") if f.is_file())


def run(name: str, work: Path, data: Path, model: Path, steps: int, streaming: bool) -> dict:
    out, cache = work / "runs" / name, work / "cache" / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    command = [
        sys.executable, str(SCRIPTS / "run_speech_recognition_ctc.py"),
        "--model_name_or_path", str(model), "--dataset_name", str(data), "--output_dir", str(out),
        "--train_split_name", "train", "--do_train", "--max_steps", str(steps), "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3", "--logging_steps", "10", "--save_strategy", "no", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "1", "--mask_time_prob", "0", "--seed", "0",
    ]  # fmt: skip
    if streaming:
        command += ["--streaming", "true", "--shuffle_buffer_size", "200", "--vocab_from_first_n", "200"]
    env = {**os.environ, "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets")}
    timing = run_timed(command, env=env, name=name)
    results = json.loads((out / "train_results.json").read_text())
    return {
        "run": name, "wall": f"{timing.wall_s:.1f} s", "audio_s_per_s": results["train_audio_seconds_per_second"],
        "padding": results["train_padding_fraction"], "peak_rss_gb": round(timing.peak_rss_gb, 2),
        "disk_mb": round(disk_bytes(out, cache) / 1e6, 1), "rows_read": results.get("train_stream_rows_read", "-"),
    }  # fmt: skip


def summary(results: list[dict]) -> dict:
    """One row for the repeats of one run: median audio-s/s (range), largest peak RSS and disk."""
    speeds = [r["audio_s_per_s"] for r in results]
    row = dict(results[0])
    row["wall"] = "/".join(r["wall"] for r in results)
    row["audio_s_per_s"] = statistics.median(speeds)
    row["range"] = f"{min(speeds):.1f}-{max(speeds):.1f}"
    row["peak_rss_gb"] = max(r["peak_rss_gb"] for r in results)
    row["disk_mb"] = max(r["disk_mb"] for r in results)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--num_clips", type=int, default=400)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = args.work_dir
    make_corpus(work / "corpus", num_train=args.num_clips, num_validation=0, num_test=0, seed=3, progress=False)
    model = save_tiny_wav2vec2(work / "model", hidden_size=144, layers=4, conv_channels=64)
    rows = local_rows(work / "corpus", "train")
    for copies in (1, 8):
        target = work / f"shards_x{copies}"
        if not (target / "train").exists():
            replicated = [{**row, "id": f"{copy}-{Path(row['audio']).stem}"} for copy in range(copies) for row in rows]
            write_shards(replicated, target, "train", 8 * copies, "parquet")
    runs = [("map-style (audiofolder)", work / "corpus", False), ("streaming, 1x shards", work / "shards_x1", True),
            ("streaming, 8x shards", work / "shards_x8", True)]
    measured: dict[str, list[dict]] = {name: [] for name, _, _ in runs}
    for _ in range(args.repeats):
        for name, data, streaming in runs:
            measured[name].append(run(name, work, data, model, args.steps, streaming=streaming))
    table = [summary(results) for results in measured.values()]
    size = {name: disk_bytes(work / name) / 1e6 for name in ("shards_x1", "shards_x8")}
    print(f"corpus: {len(rows)} clips; shards x1 {size['shards_x1']:.0f} MB (8 files), x8 {size['shards_x8']:.0f} MB "
          f"(64 files); {args.steps} steps of 8 clips")
    print(markdown_table(table))
    for row in table[1:]:
        print(f"{row['run']} / map-style audio-s/s (medians): {row['audio_s_per_s'] / table[0]['audio_s_per_s']:.2f}")


if __name__ == "__main__":
    main()
