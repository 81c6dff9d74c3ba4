#!/usr/bin/env python
"""Start a training script on several processes, with the command line of optimum-habana's gaudi_spawn.py.

    python scripts/gaudi_spawn.py --world_size 8 --use_mpi scripts/run_speech_recognition_ctc.py --use_habana ...

--use_mpi runs mpirun, --use_deepspeed the DeepSpeed launcher, neither torchrun. Works on CPU (gloo), CUDA
(NCCL) and Gaudi (HCCL) alike: the script picks its backend.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

from asr_finetune.training.launch import launch_plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world_size", type=int, default=1, help="Number of processes (devices).")
    parser.add_argument("--hostfile", default=None, help="MPI / DeepSpeed hostfile for several machines.")
    parser.add_argument("--use_mpi", action="store_true", help="Launch with mpirun.")
    parser.add_argument("--use_deepspeed", action="store_true", help="Launch with the DeepSpeed launcher.")
    parser.add_argument("--master_port", type=int, default=29500)
    parser.add_argument("--dry_run", action="store_true", help="Print the command instead of running it.")
    parser.add_argument("training_script", help="The script to launch, e.g. scripts/run_speech_recognition_ctc.py")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    plan = launch_plan(
        args.training_script,
        args.training_script_args,
        world_size=args.world_size,
        use_mpi=args.use_mpi,
        use_deepspeed=args.use_deepspeed,
        hostfile=args.hostfile,
        master_port=args.master_port,
    )
    prefix = " ".join(f"{key}={value}" for key, value in plan.env.items())
    print(f"{prefix} {shlex.join(plan.command)}".strip(), flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(plan.command, env={**os.environ, **plan.env}).returncode


if __name__ == "__main__":
    sys.exit(main())
