"""WER / CER with jiwer, and a per-utterance report of what went wrong where."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import jiwer
import numpy as np

from .errors import UsageError

logger = logging.getLogger(__name__)

SUPPORTED_METRICS = ("wer", "cer")


def _nonempty(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    # jiwer rejects empty references; an empty reference contributes no words to the error rate.
    pairs = [(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True) if ref.strip()]
    return [ref for ref, _ in pairs], [hyp for _, hyp in pairs]


def check_metric_names(metrics: Sequence[str]) -> None:
    """Refuse unknown ``--eval_metrics`` at start, not after hours of training."""
    unknown = [name for name in metrics if name not in SUPPORTED_METRICS]
    if unknown:
        raise UsageError(f"--eval_metrics: unknown metric(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(SUPPORTED_METRICS)}.")


def error_rates(references: Sequence[str], hypotheses: Sequence[str], metrics: Sequence[str] = ("wer",)) -> dict:
    """Corpus-level error rates (errors summed over the corpus, divided by reference length)."""
    check_metric_names(metrics)
    refs, hyps = _nonempty(references, hypotheses)
    if not refs:
        return {name: float("nan") for name in metrics}
    results = {}
    if "wer" in metrics:
        results["wer"] = float(jiwer.wer(refs, hyps))
    if "cer" in metrics:
        results["cer"] = float(jiwer.cer(refs, hyps))
    return results


def utterance_report(ids: Sequence[str], references: Sequence[str], hypotheses: Sequence[str]) -> list[dict[str, Any]]:
    """One row per utterance: id, reference, hypothesis, word errors (sub/del/ins) and the reference length."""
    rows = []
    for utt_id, ref, hyp in zip(ids, references, hypotheses, strict=True):
        if ref.strip():
            out = jiwer.process_words(ref, hyp)
            sub, dele, ins, n_ref = out.substitutions, out.deletions, out.insertions, len(ref.split())
        else:
            sub, dele, ins, n_ref = 0, 0, len(hyp.split()), 0
        rows.append(
            {
                "id": utt_id,
                "reference": ref,
                "hypothesis": hyp,
                "errors": sub + dele + ins,
                "substitutions": sub,
                "deletions": dele,
                "insertions": ins,
                "reference_words": n_ref,
            }
        )
    return rows


def valid_ids(ids: Any, pad_token_id: int) -> np.ndarray:
    """Prediction ids with the Trainer's -100 padding replaced by the pad token, ready to decode."""
    ids = np.asarray(ids)
    return np.where(ids < 0, pad_token_id, ids)


class TranscriptMetrics:
    """``compute_metrics`` for the Trainer: predicted ids -> text, scored against the references.

    Keeps the hypotheses of the last evaluation (``hypotheses``) for the per-utterance report.
    Subclasses say how ids become text (``decode``) and why all-empty output happens (``empty_hint``).
    """

    empty_hint = "the model emits nothing"

    def __init__(self, references: Sequence[str], metrics: Sequence[str]) -> None:
        self.references = list(references)
        self.metrics = list(metrics)
        self.hypotheses: list[str] = []

    def decode(self, ids: np.ndarray) -> list[str]:
        raise NotImplementedError

    def __call__(self, prediction: Any) -> dict[str, float]:
        self.hypotheses = [text.strip() for text in self.decode(np.asarray(prediction.predictions))]
        if len(self.hypotheses) != len(self.references):
            raise RuntimeError(f"{len(self.hypotheses)} predictions for {len(self.references)} references.")
        if self.hypotheses and not any(self.hypotheses):
            logger.warning(
                "Every hypothesis is empty (%s), so WER is 1.0. Early in training this is normal; if it persists, "
                "train longer, raise the learning rate, or check the tokenizer and labels.",
                self.empty_hint,
            )
        return error_rates(self.references, self.hypotheses, self.metrics)
