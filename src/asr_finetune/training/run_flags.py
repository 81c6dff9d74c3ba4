"""The flags that define a run (task, model, tokenizer, optimizer and schedule, batch), written beside every model
a run saves (``run_flags.json``, before the checkpoint's completion marker) and compared when a run resumes: a
resumed run never silently mixes a checkpoint with another model, tokenizer, learning rate or schedule."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from asr_finetune.errors import UsageError
from asr_finetune.files import write_json

logger = logging.getLogger(__name__)

RUN_FLAGS_FILE = "run_flags.json"
MODEL_FLAGS = ("model_name_or_path", "config_name", "tokenizer_name_or_path", "tokenizer_name", "use_peft", "lora_r",
               "lora_alpha", "lora_target_modules")
"""What defines the model's weights and shape (adapters included): compared even when a finished run is rerun."""
TRAINING_FLAGS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay", "optim", "adam_beta1",
    "adam_beta2", "adam_epsilon", "per_device_train_batch_size", "gradient_accumulation_steps",
)  # fmt: skip


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)  # enums (lr_scheduler_type, optim) as their flag value
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def run_flags(task: str, model_args: Any, training_args: Any) -> dict[str, Any]:
    """This command's run-defining flags, as they are written to ``run_flags.json``."""
    flags: dict[str, Any] = {"task": task}
    flags.update({name: _plain(getattr(model_args, name)) for name in MODEL_FLAGS if hasattr(model_args, name)})
    flags.update({name: _plain(getattr(training_args, name)) for name in TRAINING_FLAGS
                  if hasattr(training_args, name)})  # fmt: skip
    return flags


def write_run_flags(directory: str | Path, flags: dict[str, Any]) -> None:
    write_json(flags, Path(directory) / RUN_FLAGS_FILE)


def check_resume_flags(checkpoint: str | Path, flags: dict[str, Any], training_on: bool = True) -> None:
    """Refuse, naming each flag, to resume ``checkpoint`` with run-defining flags other than those it was trained
    with. ``training_on`` False (the command's training is already complete): only the model flags count, since
    nothing more is trained. A checkpoint written before flags were recorded is resumed as before (said in the
    log)."""
    if not training_on:
        flags = {name: value for name, value in flags.items() if name == "task" or name in MODEL_FLAGS}
    path = Path(checkpoint) / RUN_FLAGS_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        logger.info("%s records no run flags (an older checkpoint): resuming without comparing them.", checkpoint)
        return
    except (OSError, ValueError) as err:
        raise UsageError(f"{path} cannot be read ({err}). Pass --resume_from_checkpoint false to start fresh.") from err
    changed = {name: (saved[name], value) for name, value in flags.items() if name in saved and saved[name] != value}
    if not changed:
        return
    listed = "; ".join(f"--{name} {new} (the checkpoint: {old})" for name, (old, new) in changed.items())
    raise UsageError(
        f"Resuming {checkpoint} with other run-defining flags would mix two runs: {listed}. Give the checkpoint's "
        "values to go on with it, or start fresh with --resume_from_checkpoint false (or another --output_dir)."
    )
