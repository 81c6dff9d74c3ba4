"""Checkpoints of the pretraining loop, with no pickle anywhere: nothing in an output dir can run code on resume.

A checkpoint folder holds ``model.safetensors`` (weights), ``optimizer.bin`` (optimizer, LR schedule and loss-scaler
state: tensors and numbers only, read back with ``torch.load(weights_only=True)``), ``rng_state_<rank>.pt`` per
process (torch, CUDA, numpy and Python random states as tensors and numbers, read back the same way) and, written
last, the loop state as JSON (``trainer_state.json``, the completeness marker).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from asr_finetune.files import give_default_mode, write_json
from asr_finetune.training.checkpoints import COMPLETE_MARKER, complete_checkpoints
from asr_finetune.training.nonfinite import check_weights_finite

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.bin"
RNG_FILE = "rng_state_{rank}.pt"
STATE_FILE = COMPLETE_MARKER
"""Written last into a checkpoint (step, epoch, temperature): its presence marks the checkpoint complete."""


@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint beside the weights, optimizer and RNG states."""

    global_step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    gumbel_temperature: float = 2.0
    world_size: int = 1

    def save(self, path: Path) -> None:
        write_json(dataclasses.asdict(self), path)

    @classmethod
    def load(cls, path: Path) -> LoopState:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{key: data[key] for key in (f.name for f in dataclasses.fields(cls)) if key in data})


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


def write_checkpoint(
    accelerator: Any, output_dir: Path, state: LoopState, *, model: Any, optimizer: Any, scheduler: Any,
    save_total_limit: int | None,
) -> Path:
    """``output_dir/checkpoint-<step>`` with ``state`` written last, on every process together.

    Written to ``.checkpoint-N.partial`` and renamed when complete, so a run killed while saving leaves no
    ``checkpoint-N`` that looks resumable. Older checkpoints beyond ``save_total_limit`` are removed.
    """
    final = output_dir / f"checkpoint-{state.global_step}"
    partial = output_dir / f".checkpoint-{state.global_step}.partial"
    model = accelerator.unwrap_model(model)
    check_weights_finite(model, str(final))
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    save_training_state(
        partial, model=model if accelerator.is_main_process else None, optimizer=optimizer, scheduler=scheduler,
        scaler=accelerator.scaler, rank=accelerator.process_index,
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.save(partial / STATE_FILE)
        give_default_mode(partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        if save_total_limit:
            for old in complete_checkpoints(output_dir)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("Saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def read_checkpoint(accelerator: Any, path: Path, *, model: Any, optimizer: Any, scheduler: Any) -> LoopState:
    """Restore a checkpoint into the prepared model/optimizer/scheduler and this process's random streams; returns
    its loop state (with this run's world size, warning when the checkpoint was written by another)."""
    restored = load_training_state(
        path, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
        scaler=accelerator.scaler, rank=accelerator.process_index,
    )
    if not restored:
        logger.warning("%s has no random state for process %d: its masks and noise start from the seed.",
                       path, accelerator.process_index)
    state = LoopState.load(path / STATE_FILE)
    if state.world_size != accelerator.num_processes:
        logger.warning(
            "%s was written by %d process(es), this run has %d: the data order of the current epoch changes.",
            path, state.world_size, accelerator.num_processes,
        )
        state.world_size = accelerator.num_processes
    logger.warning(
        "Resumed from %s: step %d, epoch %d, gumbel temperature %.6f.",
        path, state.global_step, state.epoch, state.gumbel_temperature,
    )
    return state
