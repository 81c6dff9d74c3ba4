"""The console commands (``pyproject.toml``) and the ``scripts/`` shims: each settles the memory allocator first
(:func:`~asr_finetune.training.allocator.restart_with_tcmalloc`, a no-op unless this process is a fresh training
command) and only then imports its task, so a restart costs an interpreter start, not a second round of imports."""

from __future__ import annotations

from asr_finetune.training.allocator import restart_with_tcmalloc

# The imports inside these functions are deliberate: torch and transformers must load after the allocator is chosen.


def finetune_ctc() -> None:
    """``asr-finetune-ctc`` and ``scripts/run_speech_recognition_ctc.py``."""
    restart_with_tcmalloc()
    from asr_finetune.cli.ctc import console

    console()


def finetune_ctc_streaming() -> None:
    """``scripts/run_speech_recognition_ctc_streaming.py``: the CTC command with ``--streaming`` on."""
    restart_with_tcmalloc()
    from asr_finetune.cli.ctc import console

    console(streaming=True)


def finetune_seq2seq() -> None:
    """``asr-finetune-seq2seq`` and ``scripts/run_speech_recognition_seq2seq.py``."""
    restart_with_tcmalloc()
    from asr_finetune.cli.seq2seq import console

    console()


def finetune_seq2seq_streaming() -> None:
    """``scripts/run_speech_recognition_seq2seq_streaming.py``: the seq2seq command with ``--streaming`` on."""
    restart_with_tcmalloc()
    from asr_finetune.cli.seq2seq import console

    console(streaming=True)


def pretrain_wav2vec2() -> None:
    """``asr-pretrain-wav2vec2`` and ``scripts/run_wav2vec2_pretraining_no_trainer.py``."""
    restart_with_tcmalloc()
    from asr_finetune.cli.pretraining import console

    console()
