"""The optimizer state's memory: 8-bit Adam from bitsandbytes (``--optim adamw_bnb_8bit``), checked at start.

Adam keeps two fp32 moments per weight (8 bytes, twice the weights themselves); bitsandbytes stores them in 8 bits
with block-wise scales, a quarter of that, on CPU as on CUDA (bitsandbytes >= 0.50)."""

from __future__ import annotations

from typing import Any

import torch

from asr_finetune.errors import UsageError, require_module


def optimizer_name(training_args: Any) -> str:
    optim = training_args.optim
    return str(getattr(optim, "value", optim))


def uses_bitsandbytes(optim: str) -> bool:
    """True for the Trainer's bitsandbytes optimizers (adamw_bnb_8bit, adamw_8bit, paged_*, lion_8bit, ...)."""
    return "bnb" in optim or "8bit" in optim or optim.startswith("paged_")


def check_optimizer(training_args: Any) -> None:
    """Refuse at start what would fail when the optimizer is built, after the data is prepared."""
    optim = optimizer_name(training_args)
    if not uses_bitsandbytes(optim):
        return
    if getattr(training_args, "fsdp", None):
        raise UsageError(
            f"--optim {optim} with --fsdp: bitsandbytes' optimizers cannot update FSDP's sharded parameters. Give "
            "one of them: FSDP divides the Adam state among the processes, 8-bit Adam makes it 4x smaller in each."
        )
    if optim.startswith("paged_") and not torch.cuda.is_available():
        raise UsageError(f"--optim {optim}: paged optimizers page their state between GPU and CPU memory and need "
                         "CUDA. On CPU use --optim adamw_bnb_8bit.")  # fmt: skip
    require_module("bitsandbytes", f"--optim {optim}", "pip install 'asr-finetune[bnb]'")
