"""Checkpoints of the pretraining loop, with no pickle anywhere: nothing in an output dir can run code on resume.

A checkpoint folder holds ``model.safetensors`` (weights), ``optimizer.bin`` (optimizer, LR schedule and loss-scaler
state: tensors and numbers only, read back with ``torch.load(weights_only=True)``), ``rng_state_<rank>.pt`` per
process (torch, CUDA, numpy and Python random states as tensors and numbers, read back the same way) and, written
last, the loop state as JSON (``trainer_state.json``, the completeness marker).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.bin"
RNG_FILE = "rng_state_{rank}.pt"


def _rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))


def save_training_state(
    directory: Path, *, model: torch.nn.Module | None, optimizer: Any, scheduler: Any, scaler: Any, rank: int
) -> None:
    """Write this process's part of a checkpoint: the RNG state always; weights and optimizer where ``model`` is
    given (the main process)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(_rng_state(), directory / RNG_FILE.format(rank=rank))
    if model is None:
        return
    save_model(model, str(directory / WEIGHTS_FILE))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        directory / OPTIMIZER_FILE,
    )


def load_training_state(
    directory: Path, *, model: torch.nn.Module, optimizer: Any, scheduler: Any, scaler: Any, rank: int
) -> bool:
    """Restore a checkpoint written by :func:`save_training_state`; False when this rank has no RNG state there
    (a run resumed with more processes than wrote it: its random streams start from the seed)."""
    load_model(model, str(directory / WEIGHTS_FILE))
    state = torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    rng = directory / RNG_FILE.format(rank=rank)
    if not rng.is_file():
        return False
    _set_rng_state(torch.load(rng, map_location="cpu", weights_only=True))
    return True
