"""Training steps whose loss or gradients are NaN/inf: stop naming the step and its clips, or skip them (counted).

One NaN sample or one exploding batch turns every weight into NaN at the next optimizer step, and a model saved
after that is useless while the run exits 0. The guard looks at the gradients just before the optimizer step (they
are the same on every process after the all-reduce, so every process decides alike) and either stops the run or
drops the step's gradients so the optimizer leaves the weights, and its moments, untouched. Weights are checked
again before anything is saved.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from asr_finetune.errors import UsageError
from asr_finetune.training.sharding import is_wrapped, local_part

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip")


class NonFiniteError(UsageError):
    """A non-finite loss, gradient or weight; the message names the step and the clips of its batch."""


def gradients_finite(parameters: Iterable[torch.nn.Parameter]) -> bool:
    """True when every gradient is finite (one fused reduction, not one sync per tensor)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [g.norm() for g in grads]
    return bool(torch.isfinite(torch.stack([n.float() for n in norms]).sum()))


def first_nonfinite_parameter(model: torch.nn.Module) -> str | None:
    """The name of the first parameter holding NaN/inf, or None (of a sharded model: in this process's shards)."""
    for name, param in model.named_parameters():
        if not torch.isfinite(local_part(param).detach()).all():
            return name
    return None


def check_weights_finite(model: torch.nn.Module, where: str) -> None:
    """Refuse to save a model with NaN/inf weights (it would only pass the damage on). A sharded model is checked
    shard by shard, and every process learns the outcome (all of them call this)."""
    name = first_nonfinite_parameter(model)
    if is_wrapped(model) and torch.distributed.is_initialized():
        device = next(model.parameters()).device  # NCCL reduces only GPU tensors
        found = torch.tensor([0 if name is None else 1], device=device)
        torch.distributed.all_reduce(found)
        if found.item() and name is None:
            name = "(in another process's shard)"
    if name is not None:
        raise NonFiniteError(f"Not saving {where}: parameter {name} holds NaN/inf values. The model is damaged; "
                             "resume from the last checkpoint after removing the clip that caused it.")


@dataclass
class NonFiniteGuard:
    """Decides what happens to an optimizer step with non-finite gradients, per ``policy`` ("stop" or "skip")."""

    policy: str = "stop"
    skipped_steps: int = 0
    batch_ids: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UsageError(f"--on_nonfinite_loss {self.policy!r}: use one of {', '.join(POLICIES)}.")

    def start_step(self) -> None:
        self.batch_ids.clear()
        self.losses.clear()

    def add_batch(self, ids: Sequence[str] | None) -> None:
        """The clip ids of a micro-batch of the current step (named if the step goes wrong)."""
        self.batch_ids.extend(ids or [])

    def add_loss(self, loss: float) -> None:
        """A micro-batch loss of the current step (says whether the loss or only the gradients went wrong)."""
        self.losses.append(loss)

    def check(self, parameters: Iterable[torch.nn.Parameter], step: int) -> bool:
        """Before optimizer step ``step`` (1-based): True when it may go ahead. With "skip", the gradients of a
        non-finite step are dropped (set to None, so the optimizer leaves weights and moments untouched)."""
        parameters = list(parameters)
        # Decided on the gradients alone: after the all-reduce they are the same on every process, the loss is not.
        if gradients_finite(parameters):
            return True
        what = "gradient norm" if all(math.isfinite(value) for value in self.losses) else "loss"
        clips = ", ".join(self.batch_ids[:8]) + (f" and {len(self.batch_ids) - 8} more" if len(self.batch_ids) > 8
                                                  else "")
        if self.policy == "stop":
            raise NonFiniteError(
                f"Step {step}: the {what} is NaN/inf (batch: {clips or 'clips unknown'}). Nothing was saved from "
                "this step. Check these clips (run with --audio_check full), lower --learning_rate, or pass "
                "--on_nonfinite_loss skip to skip such steps (counted)."
            )
        for param in parameters:
            param.grad = None
        self.skipped_steps += 1
        logger.warning("Step %d: %s is NaN/inf; step skipped (%d so far). Batch: %s", step, what,
                       self.skipped_steps, clips or "clips unknown")
        return False
