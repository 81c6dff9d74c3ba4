#!/usr/bin/env python
"""Does pretraining pay? The demo's tiny wav2vec2 pretrained on the demo corpus's audio (no transcripts), then
fine-tuned for CTC on a few labeled clips, against the same fine-tuning from random weights; held-out WER of each.

    python scripts/benchmark_pretraining.py                 # ~30 minutes on 2 cores: 1 pretraining, 4 fine-tunings

Pretraining takes the recipe configs/pretraining/demo_pretraining.json on the train split of demo/digits (the CTC
demo's corpus, audio only); fine-tuning takes configs/ctc/demo_synthetic_digits_ctc.json with --max_train_samples N.
Every run lives in --work_dir and a rerun reuses what is complete (each command resumes or reports completion).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from asr_finetune.args import config_to_argv
from asr_finetune.tools.benchmarking import markdown_table
from asr_finetune.tools.recipes import find_recipe

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent


def run(script: str, args: dict[str, Any]) -> None:
    command = [sys.executable, str(SCRIPTS / script), *config_to_argv(args)]
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, default=Path("demo/pretraining-pays"))
    parser.add_argument("--pretrain_steps", type=int, default=1200)
    parser.add_argument("--finetune_steps", type=int, default=800)
    parser.add_argument("--labeled", type=int, nargs="+", default=[50, 150], help="labeled training clips")
    args = parser.parse_args()
    ctc, pretraining = find_recipe("demo_synthetic_digits_ctc"), find_recipe("demo_pretraining")
    for command in ctc.prepare:  # the demo corpus and the tiny model (both reused when already there)
        subprocess.run(shlex.split(command), check=True, cwd=REPO)
    work = args.work_dir.resolve()
    pretrained = work / "pretrained"
    run("run_wav2vec2_pretraining_no_trainer.py", {
        **pretraining.args, "dataset_name": ctc.args["dataset_name"], "dataset_split_names": ["train"],
        "model_name_or_path": ctc.args["model_name_or_path"], "output_dir": str(pretrained),
        "max_train_steps": args.pretrain_steps, "disable_tqdm": True,
    })  # fmt: skip
    pretrain_log = json.loads((pretrained / "all_results.json").read_text())
    rows = []
    for labeled in args.labeled:
        row: dict[str, Any] = {"labeled_clips": labeled}
        for start, model in (("pretrained", str(pretrained)), ("random weights", ctc.args["model_name_or_path"])):
            output_dir = work / f"ctc-{labeled}-{start.split()[0]}"
            run("run_speech_recognition_ctc.py", {
                **ctc.args, "model_name_or_path": model, "output_dir": str(output_dir),
                "max_train_samples": labeled, "max_steps": args.finetune_steps, "disable_tqdm": True,
            })  # fmt: skip
            row[f"held-out WER, {start} start"] = round(json.loads((output_dir / "all_results.json").read_text())
                                                         ["eval_wer"], 3)  # fmt: skip
        rows.append(row)
    print(f"pretraining: {args.pretrain_steps} steps, {pretrain_log.get('train_runtime', 0):.0f} s; fine-tuning: "
          f"{args.finetune_steps} steps each")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
