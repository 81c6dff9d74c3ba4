"""Issue 23 cases 5 and 7: SIGTERM (and Ctrl-C) sent to a real training run finish the step, write a complete
checkpoint, release the lock and exit 128 + signal in one line; the rerun resumes to the weights of an
uninterrupted run. Also under torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import transformers
from safetensors.torch import load_file
from test_faults import ctc_args
from test_pretraining import pretraining_args

from asr_finetune.training.checkpoints import checkpoint_problem
from asr_finetune.training.run_lock import LOCK_FILE

from conftest import REPO, free_port

SCRIPT = str(REPO / "scripts" / "run_speech_recognition_ctc.py")
STEPS = "40"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def args(model: Path, corpus: Path, output_dir: Path) -> list[str]:
    return ctc_args(model, corpus, output_dir, "--do_train", "--max_steps", STEPS, "--save_steps", "1000",
                    "--seed", "0", "--mask_time_prob", "0")  # fmt: skip


def stop_after_some_steps(command: list[str], signum: int, steps: int = 3, marker: str = "'loss'") -> tuple[int, str]:
    """Start ``command``, send ``signum`` once ``steps`` loss lines (lines with ``marker``) were logged, return
    (exit status, output)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
                            start_new_session=True)  # fmt: skip
    lines, losses, sent = [], 0, False
    deadline = time.time() + 600
    for line in proc.stdout:
        lines.append(line)
        losses += marker in line
        if losses >= steps and not sent:
            proc.send_signal(signum)
            sent = True
        if time.time() > deadline:
            proc.kill()
    proc.wait(timeout=120)
    assert sent, "".join(lines)[-3000:]
    return proc.returncode, "".join(lines)


def final_weights(output_dir: Path) -> dict:
    return load_file(str(output_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    output_dir = tmp_path_factory.mktemp("whole") / "run"
    subprocess.run([sys.executable, SCRIPT, *args(tiny_model, corpus, output_dir)], env=env(), check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    return final_weights(output_dir)


def check_stopped_and_resumed(status: int, log: str, signum: int, output_dir: Path, rerun: list[str],
                              uninterrupted: dict) -> None:  # fmt: skip
    name = signal.Signals(signum).name
    assert status == 128 + signum, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    stopped = [line for line in log.splitlines() if f"{name}: stopped after step" in line]
    assert len(stopped) >= 1, log[-3000:]
    step = int(stopped[0].split("stopped after step ")[1].split(";")[0])
    assert 3 <= step < int(STEPS)
    assert checkpoint_problem(output_dir / f"checkpoint-{step}") is None
    assert not (output_dir / LOCK_FILE).exists() and not (output_dir / "model.safetensors").exists()
    done = subprocess.run(rerun, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"Resuming from {output_dir}/checkpoint-{step}" in done.stdout + done.stderr
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == int(STEPS)
    resumed = final_weights(output_dir)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert (resumed[key] - value).abs().max() <= 1e-6, key


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_case05_case07_a_signal_saves_a_checkpoint_and_the_rerun_equals_an_uninterrupted_run(
    tiny_model: Path, corpus: Path, tmp_path: Path, uninterrupted: dict, signum: int
) -> None:
    output_dir = tmp_path / "run"
    command = [sys.executable, SCRIPT, *args(tiny_model, corpus, output_dir)]
    status, log = stop_after_some_steps(command, signum)
    check_stopped_and_resumed(status, log, signum, output_dir, command, uninterrupted)


@pytest.mark.skipif(int(transformers.__version__.split(".")[0]) < 5,
                    reason="transformers 4.55 cannot resume a CPU run of several processes: it loads the optimizer "
                    "with map_location=cpu:0, which torch 2.13 refuses")
def test_case05_sigterm_to_torchrun_stops_both_processes_after_the_same_step(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    def command(output_dir: Path) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", free_port(), SCRIPT, *args(tiny_model, corpus, output_dir)]  # fmt: skip

    whole = tmp_path / "whole"
    subprocess.run(command(whole), env=env(), check=True, capture_output=True, timeout=600)
    output_dir = tmp_path / "run"

    status, log = stop_after_some_steps(command(output_dir), signal.SIGTERM)
    assert log.count("World: 2 process(es)") == 2, log[-3000:]
    assert status != 0 and "Traceback" not in log.split("SIGTERM")[0], log[-3000:]
    steps = {line.split("stopped after step ")[1].split(";")[0] for line in log.splitlines()
             if "SIGTERM: stopped after step" in line}  # fmt: skip
    assert len(steps) == 1, log[-3000:]  # one step for both processes
    step = steps.pop()
    assert checkpoint_problem(output_dir / f"checkpoint-{step}") is None
    assert not (output_dir / LOCK_FILE).exists()
    rerun = subprocess.run(command(output_dir), env=env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert f"checkpoint-{step}" in rerun.stdout + rerun.stderr
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == int(STEPS)
    resumed, uninterrupted = final_weights(output_dir), final_weights(whole)
    for key, value in uninterrupted.items():
        assert (resumed[key] - value).abs().max() <= 1e-6, key


def test_sigterm_to_pretraining_saves_a_checkpoint_and_the_rerun_equals_an_uninterrupted_run(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """The pretraining loop (Accelerate, not the Trainer) stops on SIGTERM like fine-tuning does."""

    def command(output_dir: Path) -> list[str]:
        return [sys.executable, str(REPO / "scripts" / "run_wav2vec2_pretraining_no_trainer.py"),
                *pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "30", "--saving_steps",
                                  "1000", "--seed", "0")]  # fmt: skip

    whole = tmp_path / "whole"
    subprocess.run(command(whole), env=env(), check=True, capture_output=True, timeout=600)
    output_dir = tmp_path / "run"
    status, log = stop_after_some_steps(command(output_dir), signal.SIGTERM, marker="| loss ")
    assert status == 128 + signal.SIGTERM and "Traceback" not in log, log[-3000:]
    stopped = [line for line in log.splitlines() if "SIGTERM: stopped after step" in line]
    assert stopped, log[-3000:]
    step = int(stopped[0].split("stopped after step ")[1].split(";")[0])
    assert 3 <= step < 30
    assert (output_dir / f"checkpoint-{step}").is_dir() and not (output_dir / LOCK_FILE).exists()
    assert not (output_dir / "model.safetensors").exists()
    done = subprocess.run(command(output_dir), env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"checkpoint-{step}" in done.stdout + done.stderr
    resumed, uninterrupted = final_weights(output_dir), final_weights(whole)
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert (resumed[key] - value).abs().max() <= 1e-6, key
