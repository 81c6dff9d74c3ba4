"""The console commands (``pyproject.toml``) and the ``scripts/`` shims: each settles the memory allocator first
(:func:`~asr_finetune.training.allocator.restart_with_tcmalloc`, a no-op unless this process is a fresh training
command), then imports its task's ``main`` (and with it torch) and runs it under :func:`~asr_finetune.cli.run.run_cli`.
A restart so costs an interpreter start, not a second round of imports."""

from __future__ import annotations

import importlib
from typing import Any

from asr_finetune.training.allocator import restart_with_tcmalloc


def run_command(name: str, **main_kwargs: Any) -> None:
    """Run ``asr_finetune.cli.<name>.main`` as a command, on the allocator settled first."""
    restart_with_tcmalloc()
    # Imported here on purpose, after the allocator is settled: both modules import torch.
    from asr_finetune.cli.run import run_cli

    main = importlib.import_module(f"asr_finetune.cli.{name}").main
    run_cli(lambda: main(**main_kwargs))


def finetune_ctc() -> None:
    """``asr-finetune-ctc`` and ``scripts/run_speech_recognition_ctc.py``."""
    run_command("ctc")


def finetune_ctc_streaming() -> None:
    """``scripts/run_speech_recognition_ctc_streaming.py``: the CTC command with ``--streaming`` on."""
    run_command("ctc", streaming=True)


def finetune_seq2seq() -> None:
    """``asr-finetune-seq2seq`` and ``scripts/run_speech_recognition_seq2seq.py``."""
    run_command("seq2seq")


def finetune_seq2seq_streaming() -> None:
    """``scripts/run_speech_recognition_seq2seq_streaming.py``: the seq2seq command with ``--streaming`` on."""
    run_command("seq2seq", streaming=True)


def pretrain_wav2vec2() -> None:
    """``asr-pretrain-wav2vec2`` and ``scripts/run_wav2vec2_pretraining_no_trainer.py``."""
    run_command("pretraining")


def build_ngram_lm() -> None:
    """``asr-build-ngram-lm`` and ``scripts/build_ngram_lm.py`` (no training: the allocator is left as it is)."""
    from asr_finetune.cli.ngram_lm import main
    from asr_finetune.cli.run import run_cli

    run_cli(main)


def export_model() -> None:
    """``asr-export`` and ``scripts/export_model.py``."""
    from asr_finetune.cli.export import main
    from asr_finetune.cli.run import run_cli

    run_cli(main)
