"""Peak memory of a run, for the results JSON: this process's resident set, and the accelerator's allocations."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory() -> dict[str, float]:
    """``peak_rss_gb``: the largest resident set of this process so far (loader workers are processes of their
    own, not counted); ``peak_gpu_allocated_gb``: the most tensor memory allocated on this process's CUDA device."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux reports kB, macOS bytes
    figures = {"peak_rss_gb": round(rss_bytes / 1e9, 3)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        figures["peak_gpu_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return figures
