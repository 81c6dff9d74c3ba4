"""What makes a task a task: the script and command that run it, the argument groups it parses, its Trainer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One of the three tasks. Its recipes live in ``configs/<name>/``; its steps in ``asr_finetune.tasks``."""

    name: str
    script: str
    """The entry script in ``scripts/`` (the reference script's name)."""
    command: str
    """The console command (``pyproject.toml``); ``python -m asr_finetune.cli.<name>`` runs the same ``main``."""
    arguments: tuple[type, ...]
    """The task's own argument groups; a Trainer task adds the backend's TrainingArguments after them."""
    trainer: str | None
    """Which Trainer runs it: ``"trainer"``, ``"seq2seq"``, or None (its own Accelerate loop)."""

    @property
    def seq2seq(self) -> bool:
        return self.trainer == "seq2seq"
