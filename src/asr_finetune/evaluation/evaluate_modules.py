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


BUILT_IN = ("wer", "cer")


@functools.cache
def check_module(spec: str) -> None:
    """Load module ``spec`` and score one tiny pair with it, at start: a module that cannot, or whose scores would
    take a built-in metric's name, is refused here rather than at the first evaluation, hours in."""
    module = load_module(spec)
    if module.name in BUILT_IN:
        raise UsageError(f"--eval_metrics {spec}: its scores would be named {module.name!r}, the built-in metric's. "
                         "Rename the module (its folder and script) so its scores keep a name of their own.")
    try:
        module.compute(predictions=["a b"], references=["a b"])
    except Exception as err:
        raise UsageError(f"--eval_metrics {spec}: scoring one pair of texts failed ({type(err).__name__}: "
                         f"{one_line(err)[:200]}). Fix the module or drop it.") from err


def module_name(spec: str) -> str:
    """The name a module's scores are reported under (its own ``name``, e.g. ``bleu`` for ``./metrics/bleu``)."""
    return load_module(spec).name


def module_scores(spec: str, references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """The numbers module ``spec`` computes for the hypotheses against the references, named as described above."""
    name = module_name(spec)
    try:
        result = load_module(spec).compute(predictions=list(hypotheses), references=list(references))
    except Exception as err:  # an evaluation hours in must not end the run before its checkpoint is saved
        logger.error("--eval_metrics %s failed on this evaluation (%s: %s); reported as NaN.", spec,
                     type(err).__name__, one_line(err)[:200])  # fmt: skip
        return {name: float("nan")}
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
