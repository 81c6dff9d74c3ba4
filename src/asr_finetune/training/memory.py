"""Memory of a run, for the results JSON: this process's peak resident set, the accelerator's allocations, and what
the weights and optimizer state take in this process (a share of them when they are sharded)."""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch

from asr_finetune.training.sharding import local_part


def peak_memory() -> dict[str, float]:
    """``peak_rss_gb``: the largest resident set of this process so far (loader workers are processes of their
    own, not counted); ``peak_gpu_allocated_gb``: the most tensor memory allocated on this process's CUDA device."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux reports kB, macOS bytes
    figures = {"peak_rss_gb": round(rss_bytes / 1e9, 3)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        figures["peak_gpu_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return figures


def model_and_optimizer_state_gb(model: torch.nn.Module, optimizer: Any) -> float:
    """What this process holds of the weights and the optimizer state (FSDP: its shards only), in GB. Gradients,
    freed after the run, take as much again as the trained weights."""

    def held(value: Any) -> int:
        if isinstance(value, dict):
            return sum(held(item) for item in value.values())
        if not torch.is_tensor(value):
            return 0
        local = local_part(value)
        return local.numel() * local.element_size()

    total = sum(held(parameter) for parameter in model.parameters())
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer
    if inner is not None:
        total += sum(held(state) for state in inner.state.values())
    return round(total / 1e9, 6)
