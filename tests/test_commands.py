"""Console commands, ``python -m`` and the scripts run the same ``main``s from the package: pyproject's
[project.scripts] resolve, each prints its help, and a built wheel installed into a fresh venv (no clone on sys.path)
trains all three tasks and transcribes the result."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr_finetune.cli import commands, transcribe
from asr_finetune.tools.tiny_models import save_tiny_whisper

from conftest import REPO

COMMANDS = {
    "asr-finetune-ctc": commands.finetune_ctc,
    "asr-finetune-seq2seq": commands.finetune_seq2seq,
    "asr-pretrain-wav2vec2": commands.pretrain_wav2vec2,
    "asr-transcribe": transcribe.main,
    "asr-build-ngram-lm": commands.build_ngram_lm,
    "asr-export": commands.export_model,
}
HELP_MENTIONS = {
    "asr-finetune-ctc": "--chars_to_ignore",
    "asr-finetune-seq2seq": "--predict_with_generate",
    "asr-pretrain-wav2vec2": "--max_gumbel_temperature",
    "asr-transcribe": "--output_format",
    "asr-build-ngram-lm": "--text_file",
    "asr-export": "--quantization",
}
MODULES = {
    "asr-finetune-ctc": "asr_finetune.cli.ctc",
    "asr-finetune-seq2seq": "asr_finetune.cli.seq2seq",
    "asr-pretrain-wav2vec2": "asr_finetune.cli.pretraining",
    "asr-transcribe": "asr_finetune.cli.transcribe",
    "asr-build-ngram-lm": "asr_finetune.cli.ngram_lm",
    "asr-export": "asr_finetune.cli.export",
}


def resolve(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def test_pyproject_commands_resolve_to_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {name: resolve(target) for name, target in scripts.items()} == COMMANDS


@pytest.mark.parametrize("command", sorted(HELP_MENTIONS))
def test_each_command_prints_its_help(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", [command, "--help"])
    with pytest.raises(SystemExit) as done:
        COMMANDS[command]()
    assert done.value.code in (0, None)
    assert HELP_MENTIONS[command] in capsys.readouterr().out


@pytest.mark.parametrize("command", ["asr-finetune-ctc", "asr-transcribe"])
def test_python_dash_m_runs_the_same_command(command: str) -> None:
    done = subprocess.run([sys.executable, "-m", MODULES[command], "--help"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert HELP_MENTIONS[command] in done.stdout


def test_each_script_is_a_shim_over_the_package() -> None:
    for script in ("run_speech_recognition_ctc", "run_speech_recognition_ctc_streaming",
                   "run_speech_recognition_seq2seq", "run_speech_recognition_seq2seq_streaming",
                   "run_wav2vec2_pretraining_no_trainer", "transcribe", "build_ngram_lm", "export_model"):  # fmt: skip
        text = (REPO / "scripts" / f"{script}.py").read_text()
        lines = [line for line in text.splitlines() if line and not line.startswith(("#", '"', " "))]
        code = [line for line in lines if "import" in line]
        assert len(code) == 1 and code[0].startswith("from asr_finetune.cli."), (script, code)


# ---------------------------------------------------------------------------------------------- from a wheel


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH: the venv's commands must find the package through their own install."""
    return {**{key: value for key, value in os.environ.items() if key != "PYTHONPATH"}, **extra}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this tree (no scripts/ in it), installed into a fresh venv over this interpreter's
    dependencies; returns the venv's bin/."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work),
             str(REPO)]
    subprocess.run(build, check=True, capture_output=True, timeout=600, env=clean_env())
    (wheel,) = work.glob("asr_finetune-*.whl")
    root = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True, env=clean_env())
    install = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300, env=clean_env())
    return root / "bin"


@pytest.mark.slow  # a wheel build, a venv and three short training runs: ~2 minutes on 2 cores. CI runs it by name.
def test_a_wheel_install_trains_all_three_tasks_and_transcribes(
    wheel_venv: Path, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    where = subprocess.run([str(wheel_venv / "python"), "-c", "import asr_finetune; print(asr_finetune.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=clean_env(), check=True)  # fmt: skip
    assert where.stdout.startswith(str(wheel_venv.parent)), where.stdout  # the wheel's copy, not the clone's

    def run(command: str, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(wheel_venv / command), *args], capture_output=True, text=True, timeout=600,
                              cwd=tmp_path, env=clean_env())  # fmt: skip
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done

    common = ["--dataset_name", str(corpus), "--train_split_name", "train", "--eval_split_name", "test",
              "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_steps", "2",
              "--do_train", "--do_eval", "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no"]
    ctc_dir = tmp_path / "ctc"
    run("asr-finetune-ctc", "--model_name_or_path", str(tiny_model), "--output_dir", str(ctc_dir), *common)
    assert json.loads((ctc_dir / "trainer_state.json").read_text())["global_step"] == 2

    texts = [json.loads(line)["text"] for line in (corpus / "train" / "metadata.jsonl").read_text().splitlines()]
    whisper = save_tiny_whisper(tmp_path / "whisper", texts, d_model=32, layers=1, heads=2)
    s2s_dir = tmp_path / "s2s"
    run("asr-finetune-seq2seq", "--model_name_or_path", str(whisper), "--output_dir", str(s2s_dir),
        "--predict_with_generate", "--generation_max_length", "8", "--language", "en", *common)
    assert json.loads((s2s_dir / "trainer_state.json").read_text())["global_step"] == 2

    pre_dir = tmp_path / "pretrain"
    run("asr-pretrain-wav2vec2", "--dataset_name", str(corpus), "--dataset_split_names", "train",
        "--model_name_or_path", str(tiny_model), "--output_dir", str(pre_dir), "--max_train_steps", "2",
        "--per_device_train_batch_size", "4", "--validation_split_percentage", "10", "--mask_time_prob", "0.3",
        "--mask_time_length", "5", "--min_duration_in_seconds", "0.5", "--max_duration_in_seconds", "20",
        "--disable_tqdm")
    assert json.loads((pre_dir / "all_results.json").read_text())["global_step"] == 2

    clips = sorted((corpus / "test").glob("*.wav"))[:2]
    for model in (ctc_dir, s2s_dir):
        text = run("asr-transcribe", "--model", str(model), "--no_progress", *map(str, clips)).stdout
        assert [line.split("\t")[0] for line in text.splitlines()] == [str(clip) for clip in clips]
