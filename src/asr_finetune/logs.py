"""Logging set-up shared by the entry scripts."""

from __future__ import annotations

import logging
import sys
from typing import Any

import datasets
import transformers


def setup_logging(training_args: Any | None = None) -> None:
    """INFO on the main process, WARNING elsewhere; the libraries follow the same level."""
    level = logging.INFO
    if training_args is not None and not training_args.should_log:
        level = logging.WARNING
    root = logging.getLogger()
    if not any(getattr(handler, "asr_finetune", False) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler.asr_finetune = True
        root.addHandler(handler)
    root.setLevel(level)
    transformers.utils.logging.set_verbosity(logging.WARNING if level == logging.INFO else level)
    datasets.utils.logging.set_verbosity(logging.WARNING)
