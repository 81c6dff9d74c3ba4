"""Every flag the README names is accepted by the command its section is about (other programs' flags, such as
launchers' and benchmarks', are listed here by name), and --help shows the sections a user looks for."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import transformers
from transformers import Seq2SeqTrainingArguments, TrainingArguments

from asr_finetune.args import build_parser
from asr_finetune.cli.export import build_parser as export_parser
from asr_finetune.cli.ngram_lm import build_parser as ngram_parser
from asr_finetune.cli.transcribe import build_parser as transcribe_parser
from asr_finetune.tasks.ctc import CTC
from asr_finetune.tasks.pretraining.arguments import PRETRAINING
from asr_finetune.tasks.seq2seq import SEQ2SEQ
from asr_finetune.training.backends import GAUDI_HELP

from conftest import REPO

# README "## " sections -> the command whose flags they name (None: no command's flags are checked there).
SECTIONS = {
    "Set-up": None, "CTC fine-tuning": "ctc", "Data": "ctc", "Text and vocabulary": "ctc",
    "Batching and throughput": "ctc", "Speed and memory": "ctc", "Several processes": "ctc", "Streaming": "ctc",
    "Sequence-to-sequence": "seq2seq", "Pretraining": "pretraining", "Recipes": "ctc", "Faults": "ctc",
    "Evaluation metrics": "ctc", "Training curves": "ctc", "Transcribing": "transcribe", "Using an output dir": None,
    "Output directory": "ctc", "Tests": None, "Roadmap": None, "n-gram language model": "ngram",
    "Exports for serving": "export",
}
OTHER_PROGRAMS = {
    # launchers
    "--nproc_per_node", "--nnodes", "--rdzv_backend", "--rdzv_endpoint", "--rdzv_id", "--multi_gpu",
    "--num_processes", "--world_size", "--hostfile", "--use_mpi", "--use_deepspeed", "--master_port", "--dry_run",
    # benchmark scripts, run_examples.sh, create_speech_encoder_decoder.py, convert_ctranslate2_whisper.py, tensorboard
    "--work_dir", "--runs", "--reference_python", "--reference_script", "--repeats", "--steps", "--epochs",
    "--checks_only", "--nproc", "--dry-run", "--encoder", "--decoder", "--encoder_add_adapter",
    "--encoder_feat_proj_dropout", "--encoder_layerdrop", "--max_length", "--num_beams", "--bundled", "--source",
    "--corpus", "--reference_model",  # benchmark_reference.py --task seq2seq
    "--export", "--references",  # benchmark_engines.py
    "--config", "--lora_learning_rate",  # benchmark_adapters.py
    "--logdir", "--signal",  # tensorboard, sbatch
}


# TrainingArguments flags of transformers 5 that the README names; on the 4.55 stack (Gaudi) their 4.x spelling is
# the one the README gives beside them (--group_by_length).
TRANSFORMERS_5_ONLY = {"--train_sampling_strategy"} if int(transformers.__version__.split(".")[0]) < 5 else set()


def accepted(command: str) -> set[str]:
    if command == "ngram":  # the CTC script's LM flags and asr-build-ngram-lm's
        return accepted("ctc") | set(ngram_parser()._option_string_actions)
    if command == "export":  # asr-export's and asr-transcribe's
        return accepted("transcribe") | set(export_parser()._option_string_actions)
    if command == "transcribe":
        parser = transcribe_parser()
    else:
        task = {"ctc": CTC, "seq2seq": SEQ2SEQ, "pretraining": PRETRAINING}[command]
        trainer = () if task.trainer is None else (Seq2SeqTrainingArguments if task.seq2seq else TrainingArguments,)
        parser = build_parser((*task.arguments, *trainer), {"Gaudi": GAUDI_HELP} if task.trainer else None)
    return set(parser._option_string_actions)


def readme_sections() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {part.split("\n", 1)[0]: part for part in parts}


def test_every_readme_section_is_mapped() -> None:
    unmapped = [title for title in readme_sections() if not any(title.startswith(key) for key in SECTIONS)]
    assert unmapped == []


@pytest.mark.parametrize("command", ["ctc", "seq2seq", "pretraining", "transcribe", "ngram", "export"])
def test_every_flag_the_readme_names_is_accepted(command: str) -> None:
    flags = accepted(command)
    unknown = {}
    for title, text in readme_sections().items():
        if next(value for key, value in SECTIONS.items() if title.startswith(key)) != command:
            continue
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", text))
        missing = sorted(named - flags - OTHER_PROGRAMS - TRANSFORMERS_5_ONLY)
        if missing:
            unknown[title] = missing
    assert unknown == {}


def test_a_flag_the_script_refuses_is_caught() -> None:
    assert "--feature_extractor_name" not in accepted("ctc") and "--feature_extractor_name" in accepted("seq2seq")


def test_help_is_grouped_and_lists_legacy_and_gaudi_flags() -> None:
    done = subprocess.run([sys.executable, "scripts/run_speech_recognition_ctc.py", "--help"], capture_output=True,
                          text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    headings = [line[:-1] for line in done.stdout.splitlines() if line and not line[0].isspace() and line[-1] == ":"]
    assert headings[:2] == ["options", "Model (CTC)"] and headings[-1] == "Trainer (transformers' TrainingArguments)"
    assert {"Data and text (CTC)", "Batching (duration buckets, static shapes)", "Streaming (--streaming)"} <= set(
        headings
    )
    for flag in ("--group_by_length", "--evaluation_strategy", "--overwrite_output_dir", "--use_habana",
                 "--gaudi_config_name", "--resume_from_checkpoint", "--chars_to_ignore"):  # fmt: skip
        assert re.search(rf"^  {flag}\b", done.stdout, re.M), flag
    no_freeze = done.stdout.split("\n  --no_freeze_feature_encoder", 1)[1]
    assert no_freeze.split("\n  --", 1)[0].split("\n", 1)[1].strip().startswith("Turn --freeze_feature_encoder off.")
    assert "false/no/none/fresh: start fresh" in " ".join(done.stdout.split())
