"""Which checkpoint a run resumes from: only complete ones, never the model directory."""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

from asr_finetune.errors import UsageError
from asr_finetune.training.sharding import has_fsdp_weights, sharded_weights_problem

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "trainer_state.json"  # the Trainer writes it last, after weights, optimizer and RNG state
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")  # optimizer.pt, scheduler.pt, rng_state*.pth, training_args.bin, ...
FRESH_VALUES = ("false", "no", "none", "0", "fresh")


def read_state(checkpoint: str | Path) -> dict[str, Any] | None:
    """The parsed ``trainer_state.json`` of a checkpoint, or None when it is missing, empty or cut off."""
    try:
        state = json.loads((Path(checkpoint) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def safetensors_complete(path: Path) -> bool:
    """True when a .safetensors file holds every byte its header promises (a full disk cuts it short)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > size - 8:
                return False
            header = json.loads(handle.read(header_size))
    except (OSError, ValueError, struct.error):
        return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return 8 + header_size + max(ends, default=0) <= size


def torch_file_problem(path: Path) -> str | None:
    """Why a ``torch.save`` file (a zip archive) cannot be loaded, or None: empty, or cut short (no zip directory at
    its end, or members reaching past it)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return f"{path.name} is empty"
        with zipfile.ZipFile(path) as archive:
            end = max((info.header_offset + info.compress_size for info in archive.infolist()), default=0)
    except (OSError, zipfile.BadZipFile):
        return f"{path.name} is cut off or not a torch file"
    return f"{path.name} is cut off" if end > size else None


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete: its state parses, its weights
    are all there, and every torch file in it (optimizer, scheduler, RNG states, arguments) is whole."""
    path = Path(checkpoint)
    if read_state(path) is None:
        state = path / COMPLETE_MARKER
        return f"{COMPLETE_MARKER} is {'missing' if not state.exists() else 'empty or cut off'}"
    weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
    fsdp_problem = sharded_weights_problem(path)
    if fsdp_problem:
        return fsdp_problem
    if not weights and not has_fsdp_weights(path):
        return "no model weights"
    for weight in weights:
        if weight.suffix == ".safetensors" and not safetensors_complete(weight):
            return f"{weight.name} is cut off"
        if weight.stat().st_size == 0:
            return f"{weight.name} is empty"
    for torch_file in sorted(p for p in path.iterdir() if p.suffix in TORCH_SUFFIXES and p.is_file()):
        problem = torch_file_problem(torch_file)
        if problem:
            return problem
    return None


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders of ``output_dir``, oldest step first; incomplete ones are skipped with a
    warning (cut off while saving: killed, or the disk filled up)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = CHECKPOINT_RE.match(path.name)
        if not (match and path.is_dir()):
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            found.append((int(match[1]), path))
        else:
            logger.warning("Ignoring incomplete checkpoint %s (%s): it was cut off while saving.", path, problem)
    return [path for _, path in sorted(found)]


def remove_checkpoints(output_dir: str | Path) -> list[str]:
    """Delete every ``checkpoint-N`` folder of ``output_dir`` (a fresh start: a later rerun must not resume from a
    checkpoint of the run being replaced)."""
    root = Path(output_dir)
    removed = []
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if CHECKPOINT_RE.match(path.name) and path.is_dir():
                shutil.rmtree(path)
                removed.append(path.name)
    if removed:
        logger.warning("Starting fresh: removed %s from %s.", ", ".join(removed), root)
    return removed


def _fresh(resume_from_checkpoint: str | None) -> bool:
    return (resume_from_checkpoint or "").strip().lower() in FRESH_VALUES and resume_from_checkpoint is not None


def resume_point(output_dir: str | Path, resume_from_checkpoint: str | None, is_main_process: bool) -> str | None:
    """What a training run starts from: the checkpoint :func:`resolve_resume` picks, or None. A fresh start
    (``--resume_from_checkpoint false``, ``--overwrite_output_dir``) also removes the old checkpoints (main process),
    so a later rerun cannot resume from the run being replaced."""
    resume = resolve_resume(output_dir, resume_from_checkpoint)
    if resume is None and _fresh(resume_from_checkpoint) and is_main_process:
        remove_checkpoints(output_dir)
    return resume


def resolve_resume(output_dir: str | Path, resume_from_checkpoint: str | None, start_fresh: bool = False) -> str | None:
    """The checkpoint to resume from, or None to start from the model.

    ``None`` (default): the newest complete checkpoint in ``output_dir`` if any (rerunning a command resumes).
    ``false``: start fresh. ``true``/``latest``: the newest, and an error if there is none. A path: that one.
    """
    value = (resume_from_checkpoint or "").strip()
    if start_fresh or _fresh(resume_from_checkpoint):
        logger.info("Starting fresh: checkpoints in %s are not used.", output_dir)
        return None
    if value and value.lower() not in ("true", "latest", "yes"):
        problem = checkpoint_problem(value) if Path(value).is_dir() else "no such folder"
        if problem:
            raise UsageError(f"--resume_from_checkpoint {value}: not a complete checkpoint ({problem}).")
        return str(Path(value))
    checkpoints = complete_checkpoints(output_dir)
    if checkpoints:
        logger.warning(
            "Resuming from %s. Pass --resume_from_checkpoint false (or --overwrite_output_dir) to start fresh.",
            checkpoints[-1],
        )
        return str(checkpoints[-1])
    if value:
        raise UsageError(f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir}.")
    return None
