"""Console commands for the training scripts: ``asr-finetune-ctc``, ``asr-finetune-seq2seq``, ``asr-pretrain-wav2vec2``.

Each runs its script in ``scripts/`` as ``python scripts/<name>.py`` would (same flags, same exit statuses), so the
scripts stay the one place their steps are written. The scripts are found beside the package in the repository
the package was installed from (``pip install -e .``). ``asr-transcribe`` is :func:`asr_finetune.transcription.main`.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"
COMMANDS = {
    "asr-finetune-ctc": "run_speech_recognition_ctc.py",
    "asr-finetune-seq2seq": "run_speech_recognition_seq2seq.py",
    "asr-pretrain-wav2vec2": "run_wav2vec2_pretraining_no_trainer.py",
}


def script_path(name: str) -> Path:
    """The script file behind a command; a one-line exit (status 2) when the install has no scripts/ folder."""
    path = SCRIPTS_DIR / name
    if not path.is_file():
        sys.exit(
            f"{path} not found: the asr-finetune commands run the repository's scripts/, so install from a clone "
            "with `pip install -e .` (or run `python scripts/<script>.py` there)."
        )
    return path


def run_script(name: str) -> None:
    """Run ``scripts/<name>`` as ``__main__`` with this process's command line (``sys.argv[1:]``)."""
    path = script_path(name)
    sys.argv[0] = str(path)
    sys.path.insert(0, str(path.parent))  # as `python scripts/x.py` puts the script's folder first
    runpy.run_path(str(path), run_name="__main__")


def finetune_ctc() -> None:
    """``asr-finetune-ctc``: scripts/run_speech_recognition_ctc.py."""
    run_script(COMMANDS["asr-finetune-ctc"])


def finetune_seq2seq() -> None:
    """``asr-finetune-seq2seq``: scripts/run_speech_recognition_seq2seq.py."""
    run_script(COMMANDS["asr-finetune-seq2seq"])


def pretrain_wav2vec2() -> None:
    """``asr-pretrain-wav2vec2``: scripts/run_wav2vec2_pretraining_no_trainer.py."""
    run_script(COMMANDS["asr-pretrain-wav2vec2"])
