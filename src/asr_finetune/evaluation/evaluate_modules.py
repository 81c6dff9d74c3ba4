"""``--eval_metrics`` beyond wer and cer: any Hugging Face ``evaluate`` module, as the reference scripts allow.

A module is named by a local path (a folder ``name/`` holding ``name.py``, or the script itself) or by a name that
``evaluate`` can load (from the Hub, or offline from its cache once loaded). It is scored on the same references
and hypotheses as WER, as ``eval_<module name>``; a module that returns several numbers adds
``eval_<module name>_<key>`` for the others. ``evaluate`` is an optional dependency: wer and cer are computed with
jiwer and need neither it nor the network.
"""

from __future__ import annotations

import functools
import logging
import numbers
from collections.abc import Sequence
from typing import Any

from asr_finetune.errors import UsageError, one_line

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'asr-finetune[evaluate]'"


@functools.cache
def load_module(spec: str) -> Any:
    """The ``evaluate`` module ``spec`` names, loaded once per process; a one-line UsageError when it cannot be."""
    try:
        import evaluate
    except ImportError as err:
        raise UsageError(
            f"--eval_metrics {spec}: not a built-in metric (wer, cer), and the evaluate package that loads other "
            f"metrics is not installed: {INSTALL_HINT}, or drop {spec}."
        ) from err
    try:
        return evaluate.load(spec, keep_in_memory=True)
    except Exception as err:  # evaluate raises FileNotFoundError, ImportError, ConnectionError, ...
        raise UsageError(
            f"--eval_metrics {spec}: evaluate cannot load it ({type(err).__name__}: {one_line(err)[:200]}). Give a "
            "folder holding <name>/<name>.py, a metric script, or a module name evaluate has on the Hub or in its "
            "cache; built in: wer, cer."
        ) from err


def module_name(spec: str) -> str:
    """The name a module's scores are reported under (its own ``name``, e.g. ``bleu`` for ``./metrics/bleu``)."""
    return load_module(spec).name


def module_scores(spec: str, references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """The numbers module ``spec`` computes for the hypotheses against the references, named as described above."""
    name = module_name(spec)
    result = load_module(spec).compute(predictions=list(hypotheses), references=list(references))
    if not isinstance(result, dict):
        result = {name: result}
    scores = {}
    for key, value in result.items():
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            scores[name if key == name else f"{name}_{key}"] = float(value)
    if not scores:
        logger.warning("--eval_metrics %s returned no single numbers (%s); nothing is reported for it.",
                       spec, ", ".join(result) or "nothing")  # fmt: skip
    return scores
