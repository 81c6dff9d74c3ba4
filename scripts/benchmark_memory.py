#!/usr/bin/env python
"""Memory levers side by side on 2 CPU processes: DDP, DDP with 8-bit Adam state, FSDP full_shard; the same
wav2vec2-base-sized model, data, steps and seed.

    python scripts/benchmark_memory.py --work_dir /tmp/bench_memory

The model is wav2vec2-base's shape (94M weights) with random weights, built from its config; the data is the
synthetic digits corpus. Columns: what one process holds of the weights and Adam state, each process's peak RSS
(sampled), seconds per step, wall; then each run's losses (DDP and FSDP train the same model, so they must agree
within rounding; 8-bit Adam rounds its moments, so its losses drift from the third step on).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from asr_finetune.tools.benchmarking import markdown_table, run_sampling_workers

SCRIPT = Path(__file__).resolve().parent / "run_speech_recognition_ctc.py"


def build_inputs(work_dir: Path) -> tuple[Path, Path]:
    """The digits corpus and a randomly initialised model of wav2vec2-base's shape, made once."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    from asr_finetune.tools.synthetic import make_corpus
    from asr_finetune.tools.tiny_models import wav2vec2_feature_extractor

    corpus, model_dir = work_dir / "corpus", work_dir / "wav2vec2-base-random"
    if not (corpus / "train").is_dir():
        make_corpus(corpus, num_train=64, num_validation=4, num_test=8, seed=1, progress=False)
    if not (model_dir / "config.json").is_file():
        import torch

        torch.manual_seed(0)
        Wav2Vec2ForPreTraining(Wav2Vec2Config()).save_pretrained(model_dir)  # the defaults are wav2vec2-base's
        wav2vec2_feature_extractor().save_pretrained(model_dir)
    return corpus, model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=2, help="per process")
    parser.add_argument("--port", default="29731")
    args = parser.parse_args()

    corpus, model_dir = build_inputs(args.work_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows, curves = [], {}
    runs = [("DDP", []), ("DDP, 8-bit AdamW", ["--optim", "adamw_bnb_8bit"]),
            ("FSDP full_shard", ["--fsdp", "full_shard auto_wrap"])]
    for index, (name, flags) in enumerate(runs):
        out = args.work_dir / f"run{index}"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                   args.port, str(SCRIPT), "--model_name_or_path", str(model_dir), "--dataset_name", str(corpus),
                   "--train_split_name", "train", "--output_dir", str(out), "--do_train", "--max_steps",
                   str(args.steps), "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", "1e-4",
                   "--warmup_steps", "0", "--logging_steps", "1", "--save_strategy", "no", "--seed", "0",
                   "--report_to", "none", "--disable_tqdm", "true", *flags]  # fmt: skip
        wall, peaks = run_sampling_workers(command, marker=SCRIPT.name, env=env, name=name)
        train = json.loads((out / "train_results.json").read_text())
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        curves[name] = [entry["loss"] for entry in history if "loss" in entry]
        held = train["train_model_and_optimizer_state_gb"]
        rows.append({"run": name, "weights + optimizer state per process GB": round(held, 2),
                     "peak RSS per process GB": " / ".join(f"{peak:.2f}" for peak in peaks),
                     "s/step": round(train["train_runtime"] / args.steps, 2), "wall s": round(wall)})  # fmt: skip
        print(rows[-1], flush=True)
    print(markdown_table(rows))
    for name, losses in curves.items():
        print(f"{name} losses: " + " ".join(f"{loss:.4f}" for loss in losses))
    gap = max(abs(a - b) / abs(b) for a, b in zip(curves["FSDP full_shard"], curves["DDP"], strict=True))
    print(f"largest relative loss difference: {gap:.2e}")


if __name__ == "__main__":
    main()
