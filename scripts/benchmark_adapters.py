#!/usr/bin/env python
"""Full fine-tuning against LoRA, side by side: the same model, data, steps and seed, scored by the same evaluation.

    python scripts/build_real_corpus.py ...   # or any corpus with train and test splits
    python scripts/benchmark_adapters.py --work_dir /tmp/bench_lora --corpus /tmp/real \\
        --config configs/seq2seq/demo_real_speech_whisper_tiny_en.json

Rows: full fine-tune at the config's learning rate; LoRA at the same rate and at each ``--lora_learning_rate``.
Columns: trained parameters, wall, peak RSS, seconds per step, held-out normalised WER (the test split).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from asr_finetune.tools.benchmarking import markdown_table, run_timed
from asr_finetune.tools.ctranslate2_whisper import cached_bundled_whisper

SCRIPTS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus with train and test splits")
    parser.add_argument("--config", type=Path, required=True, help="the recipe both runs start from")
    parser.add_argument("--model", default=None, help="default: the bundled Whisper tiny.en")
    parser.add_argument("--lora_learning_rate", type=float, nargs="*", default=[1e-3])
    parser.add_argument("--lora_r", type=int, default=8)
    args = parser.parse_args()

    config = json.loads(args.config.read_text())
    script = SCRIPTS / ("run_speech_recognition_seq2seq.py" if "seq2seq" in str(args.config)
                        else "run_speech_recognition_ctc.py")  # fmt: skip
    model = args.model or str(cached_bundled_whisper())
    runs = [("full fine-tune", [])]
    runs += [(f"LoRA r={args.lora_r}, lr {lr:g}", ["--use_peft", "--lora_r", str(args.lora_r), "--lora_alpha",
              str(2 * args.lora_r), "--learning_rate", str(lr)]) for lr in [config["learning_rate"],
              *args.lora_learning_rate]]  # fmt: skip
    rows = []
    for index, (name, flags) in enumerate(runs):
        out = args.work_dir / f"run{index}"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, str(script), str(args.config), "--model_name_or_path", model, "--dataset_name",
                   str(args.corpus), "--eval_split_name", "test", "--output_dir", str(out), *flags]  # fmt: skip
        timing = run_timed(command, name=name)
        train = json.loads((out / "train_results.json").read_text())
        evaluation = json.loads((out / "eval_results.json").read_text())
        steps = json.loads((out / "trainer_state.json").read_text())["global_step"]
        rows.append({"run": name, "trained parameters": f"{train['train_trained_parameters'] / 1e6:.2f}M",
                     "steps": steps, "wall s": round(timing.wall_s), "peak RSS GB": round(timing.peak_rss_gb, 2),
                     "s/step": round(train["train_runtime"] / steps, 2),
                     "held-out WER": round(evaluation["eval_normalized_wer"], 3)})  # fmt: skip
        print(rows[-1], flush=True)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
