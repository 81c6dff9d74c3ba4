"""Multi-process launches: the environment a launched process needs (torchrun, torch.distributed.launch, mpirun),
its teardown, and the commands gaudi_spawn.py runs (mpirun, deepspeed, or torchrun)."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from asr_finetune.training.allocator import allocator_in_use

logger = logging.getLogger(__name__)

T = TypeVar("T")

MPI_ENV = {
    "RANK": "OMPI_COMM_WORLD_RANK",
    "WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
    "LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_RANK",
    "LOCAL_WORLD_SIZE": "OMPI_COMM_WORLD_LOCAL_SIZE",
}


@contextlib.contextmanager
def environment_restored() -> Iterator[None]:
    """On leaving, the environment variables are as on entering: added ones removed, changed ones put back."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name not in saved]:
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def keeps_environment(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry script's ``main``: the environment variables it set are undone when it returns or fails.
    transformers 4.x's ``TrainingArguments`` exports ``ACCELERATE_DYNAMO_BACKEND`` (``--torch_compile``),
    ``ACCELERATE_MIXED_PRECISION`` and ``ACCELERATE_USE_FSDP`` into ``os.environ``; left there, a second ``main``
    in the same Python (a notebook, a sweep) and every process it starts would inherit the first run's choices."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with environment_restored():
            return main(*args, **kwargs)

    return wrapper


def prepare_launch_environment() -> None:
    """Make Trainer/Accelerate see a multi-process launch (torchrun, torch.distributed.launch, mpirun) as one run.

    Processes started by mpirun get torch.distributed's RANK/WORLD_SIZE/LOCAL_RANK from Open MPI's variables.
    On CPU, ACCELERATE_USE_CPU is set: without it, two processes started by torchrun each train their own copy.
    """
    for torch_name, mpi_name in MPI_ENV.items():
        if torch_name not in os.environ and mpi_name in os.environ:
            os.environ[torch_name] = os.environ[mpi_name]
    os.environ.setdefault("MASTER_ADDR", "localhost")
    os.environ.setdefault("MASTER_PORT", "29500")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def available_cores() -> int:
    """The CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota (a container's
    ``--cpus``), which torch's own count (the machine's cores) ignores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def set_cpu_threads(loader_workers: int = 0) -> int:
    """Give torch's intra-op pool this process's share of the cores: the available cores divided among the
    processes of this machine (torchrun, mpirun and accelerate start several), unless OMP_NUM_THREADS says
    otherwise. Logged once per process with the loader workers beside it. Returns the thread count."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = available_cores()
    if "OMP_NUM_THREADS" in os.environ:
        threads, why = torch.get_num_threads(), "OMP_NUM_THREADS"
    else:
        threads, why = max(1, cores // local), f"{cores} core(s) / {local} process(es) on this machine"
        torch.set_num_threads(threads)
    logger.info("CPU threads: torch uses %d (%s); %d loader worker process(es), 1 thread each; memory allocator: %s.",
                threads, why, loader_workers, allocator_in_use())
    return threads


def end_distributed(abort: bool = False) -> None:
    """Tear the process group down before interpreter exit; left to exit, gloo can abort a rank (exit -6).

    ``abort``: this process is failing, so it does not wait at a barrier for processes that may not come.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # The trainer's reference cycles hold the DDP model and its process group: freed now, while the interpreter
        # is whole, not during its teardown, where gloo's threads could abort the process (SIGABRT after a finished
        # run, seen on mpirun ranks).
        gc.collect()
        if not abort:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()


@dataclass
class LaunchPlan:
    """A command and the environment variables it needs on top of the current ones."""

    command: list[str]
    env: dict[str, str]


def _first_host(hostfile: str | None) -> str:
    if hostfile:
        for line in Path(hostfile).read_text().splitlines():
            host = line.split("#")[0].split()
            if host:
                return host[0]
    return "localhost"


def launch_plan(
    script: str,
    script_args: list[str],
    *,
    world_size: int = 1,
    use_mpi: bool = False,
    use_deepspeed: bool = False,
    hostfile: str | None = None,
    master_port: int = 29500,
    cores: int | None = None,
) -> LaunchPlan:
    """The command that starts ``world_size`` processes of ``script``, as optimum-habana's gaudi_spawn.py does.

    MPI: ``mpirun`` binding each rank to cores/world_size cores; DeepSpeed: its launcher; otherwise torchrun.
    """
    if use_mpi and use_deepspeed:
        raise ValueError("Choose one of --use_mpi and --use_deepspeed.")
    python = sys.executable
    env = {"MASTER_ADDR": _first_host(hostfile), "MASTER_PORT": str(master_port)}
    if use_mpi:
        mpirun = shutil.which("mpirun")
        if mpirun is None:
            raise RuntimeError("--use_mpi needs mpirun: apt-get install openmpi-bin (or your MPI of choice).")
        per_rank = max(1, (cores or os.cpu_count() or 1) // world_size)
        command = [
            mpirun,
            "-n",
            str(world_size),
            "--bind-to",
            "core",
            "--map-by",
            f"socket:PE={per_rank}",
            "--rank-by",
            "slot",
        ]
        if hostfile:
            command += ["--hostfile", hostfile]
        if os.geteuid() == 0:
            command.append("--allow-run-as-root")
        # MPI starts the processes; each maps its OMPI_COMM_WORLD_* ranks (see prepare_launch_environment).
        return LaunchPlan(command + [python, script, *script_args], env)
    if use_deepspeed:
        deepspeed = shutil.which("deepspeed")
        if deepspeed is None:
            raise RuntimeError("--use_deepspeed needs DeepSpeed: pip install deepspeed (Habana's fork on Gaudi).")
        command = [
            deepspeed,
            "--num_nodes",
            "1",
            "--num_gpus",
            str(world_size),
            "--no_local_rank",
            "--master_port",
            str(master_port),
        ]
        if hostfile:
            command += ["--hostfile", hostfile]
        return LaunchPlan(command + [script, *script_args], env)
    command = [
        python,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(world_size),
        "--master_port",
        str(master_port),
    ]
    return LaunchPlan(command + [script, *script_args], {})
