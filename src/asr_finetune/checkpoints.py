"""Which checkpoint a run resumes from: only complete ones, never the model directory."""

from __future__ import annotations

import logging
import re
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "trainer_state.json"  # the Trainer writes it last, after weights, optimizer and RNG state
FRESH_VALUES = ("false", "no", "none", "0", "fresh")


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders of ``output_dir``, oldest step first; half-written ones are skipped."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = CHECKPOINT_RE.match(path.name)
        if not (match and path.is_dir()):
            continue
        if (path / COMPLETE_MARKER).is_file():
            found.append((int(match[1]), path))
        else:
            logger.warning(
                "Ignoring incomplete checkpoint %s (no %s): it was cut off while saving.", path, COMPLETE_MARKER
            )
    return [path for _, path in sorted(found)]


def resolve_resume(output_dir: str | Path, resume_from_checkpoint: str | None, start_fresh: bool = False) -> str | None:
    """The checkpoint to resume from, or None to start from the model.

    ``None`` (default): the newest complete checkpoint in ``output_dir`` if any (rerunning a command resumes).
    ``false``: start fresh. ``true``/``latest``: the newest, and an error if there is none. A path: that one.
    """
    value = (resume_from_checkpoint or "").strip()
    if start_fresh or value.lower() in FRESH_VALUES:
        logger.info("Starting fresh: checkpoints in %s are not used.", output_dir)
        return None
    if value and value.lower() not in ("true", "latest", "yes"):
        path = Path(value)
        if not (path / COMPLETE_MARKER).is_file():
            raise ValueError(f"--resume_from_checkpoint {value}: not a complete checkpoint (no {COMPLETE_MARKER}).")
        return str(path)
    checkpoints = complete_checkpoints(output_dir)
    if checkpoints:
        logger.warning(
            "Resuming from %s. Pass --resume_from_checkpoint false (or --overwrite_output_dir) to start fresh.",
            checkpoints[-1],
        )
        return str(checkpoints[-1])
    if value:
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir}.")
    return None
