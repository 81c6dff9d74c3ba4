"""Real multi-process launches on CPU (gloo): torchrun, torch.distributed.launch, gaudi_spawn over mpirun/torchrun."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from asr_finetune.training.launch import launch_plan

from conftest import REPO, run_on_free_port

CTC = str(REPO / "scripts" / "run_speech_recognition_ctc.py")
SPAWN = str(REPO / "scripts" / "gaudi_spawn.py")


def ctc_args(model: Path, corpus: Path, output_dir: Path) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--dataset_name",
        str(corpus),
        "--train_split_name",
        "train",
        "--eval_split_name",
        "test",
        "--output_dir",
        str(output_dir),
        "--do_train",
        "--do_eval",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--freeze_feature_encoder",
        "false",
    ]


def check_two_process_run(proc: subprocess.CompletedProcess, output_dir: Path) -> None:
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    # Both ranks joined one world: not two independent single-process runs that each exited 0.
    assert log.count("World: 2 process(es)") == 2, log[-3000:]
    # The ranks restarted themselves on tcmalloc under the launcher (same PIDs: still one world, as counted above)
    # and run the fast feature encoder. Info lines come from rank 0 only.
    assert "memory allocator: tcmalloc (" in log, log[-3000:]
    assert "Conv feature encoder: time-major forward on CPU" in log, log[-3000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    # 2 steps x 4 utterances x 2 processes = half of the 32 training utterances (one process: a quarter).
    assert state["epoch"] == pytest.approx(0.5)
    rows = (output_dir / "eval_predictions.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["id"] for r in rows) == sorted({json.loads(r)["id"] for r in rows})
    assert len(rows) == 8  # every eval utterance once, gathered over both ranks


def run(command: Callable[[str], list[str]]) -> subprocess.CompletedProcess:
    return run_on_free_port(command, timeout=600)


# torch.distributed.launch is the seed recipes' legacy launcher: it passes --local-rank to the script.
@pytest.mark.parametrize("launcher", ["torch.distributed.run", "torch.distributed.launch"])
def test_torchrun_and_legacy_launch_two_processes(
    launcher: str, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / launcher
    proc = run(lambda port: [sys.executable, "-m", launcher, "--nproc_per_node", "2", "--master_port", port, CTC,
                             *ctc_args(tiny_model, corpus, out)])
    check_two_process_run(proc, out)


def test_gaudi_spawn_over_mpirun(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "mpi"
    proc = run(lambda port: [sys.executable, SPAWN, "--world_size", "2", "--use_mpi", "--master_port", port, CTC,
                             *ctc_args(tiny_model, corpus, out)])
    assert "mpirun -n 2 --bind-to core --map-by socket:PE=" in proc.stdout
    check_two_process_run(proc, out)
    # mpirun sets no OMP_NUM_THREADS: each of the 2 ranks takes its share of the 2 cores, not all of them.
    assert "CPU threads: torch uses 1 (" in proc.stdout + proc.stderr
    assert "Model: Wav2Vec2ForCTC, attention sdpa" in proc.stdout + proc.stderr


def test_gaudi_spawn_over_torchrun(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "spawn-torchrun"
    proc = run(lambda port: [sys.executable, SPAWN, "--world_size", "2", "--master_port", port, CTC,
                             *ctc_args(tiny_model, corpus, out)])
    assert "torch.distributed.run --nproc_per_node 2" in proc.stdout
    check_two_process_run(proc, out)


def test_launch_plans() -> None:
    mpi = launch_plan("train.py", ["--x", "1"], world_size=8, use_mpi=True, cores=160, master_port=12345)
    assert mpi.command[1:9] == ["-n", "8", "--bind-to", "core", "--map-by", "socket:PE=20", "--rank-by", "slot"]
    assert mpi.command[-3:] == ["train.py", "--x", "1"] and mpi.env["MASTER_PORT"] == "12345"
    torchrun = launch_plan("train.py", [], world_size=4)
    assert torchrun.command[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "4"]
    with pytest.raises(ValueError, match="one of"):
        launch_plan("train.py", [], use_mpi=True, use_deepspeed=True)


def test_hostfile_names_the_master(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# workers\nnode-a slots=8\nnode-b slots=8\n")
    plan = launch_plan("t.py", [], world_size=16, use_mpi=True, hostfile=str(hostfile))
    assert plan.env["MASTER_ADDR"] == "node-a" and "--hostfile" in plan.command


def test_torch_threads_are_this_process_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from asr_finetune.training.launch import available_cores, set_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        assert set_cpu_threads() == max(1, available_cores() // 2) == torch.get_num_threads()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert set_cpu_threads() == available_cores() == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert set_cpu_threads() == 1  # the user's setting stands
    finally:
        torch.set_num_threads(before)
