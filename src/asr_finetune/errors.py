"""The one error type for user mistakes: bad flags, bad data, an impossible request, a busy output dir.

Entry scripts end such a run with the message on one line and exit status 2 (see :func:`asr_finetune.cli.run.run_cli`),
never with a traceback: the message itself names the flag, file or row and says what to do.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class UsageError(ValueError):
    """A mistake the user can fix; the message says what and how."""


class DataError(UsageError):
    """Bad input data; the message names the file, split, column or row and says what to do."""


def require_module(module: str, purpose: str, hint: str) -> ModuleType:
    """Import an optional package, or refuse in one line: ``{purpose} needs {module}: {hint}.``"""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{purpose} needs {module}: {hint}.") from None


class Stopped(Exception):
    """The run was asked to stop (SIGTERM, SIGUSR1, Ctrl-C); the message says what was saved and how to go on. The
    command exits with ``128 + signal`` (143 for SIGTERM), what shells and schedulers read as "killed by that
    signal": a requeued job reruns the command and resumes."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.status = 128 + signum


def one_line(err: BaseException) -> str:
    """The user-facing text of an error, also when it crossed a DataLoader worker (which wraps the traceback in)."""
    text = str(err)
    if "Original Traceback" in text:
        # torch re-raises worker errors as "Caught X in DataLoader worker process N.\nOriginal Traceback ...\nX: msg"
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text
