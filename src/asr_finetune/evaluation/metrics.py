"""WER / CER with jiwer (plus any ``evaluate`` module asked for), and a per-utterance report of what went wrong
where."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import jiwer
import numpy as np

from asr_finetune.errors import UsageError
from asr_finetune.evaluation.evaluate_modules import check_module, module_name, module_scores

logger = logging.getLogger(__name__)

SUPPORTED_METRICS = ("wer", "cer")
METRICS_HELP = (
    "wer and cer (built in), or any evaluate module: a local metric folder/script or a name evaluate can load, "
    "reported as eval_<module name> (pip install 'asr-finetune[evaluate]')."
)
EVAL_NORMALIZERS = ("english", "basic", "none")


def _nonempty(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    # jiwer rejects empty references; an empty reference contributes no words to the error rate.
    pairs = [(ref, hyp) for ref, hyp in zip(references, hypotheses, strict=True) if ref.strip()]
    return [ref for ref, _ in pairs], [hyp for _, hyp in pairs]


def check_metric_names(metrics: Sequence[str]) -> None:
    """Refuse unknown ``--eval_metrics`` at start, not after hours of training: names other than the built-in wer
    and cer must be ``evaluate`` modules that load and score a pair of texts, under a name of their own
    (:mod:`asr_finetune.evaluation.evaluate_modules`)."""
    for name in metrics:
        if name not in SUPPORTED_METRICS:
            check_module(name)


def error_rates(references: Sequence[str], hypotheses: Sequence[str], metrics: Sequence[str] = ("wer",)) -> dict:
    """Corpus-level error rates (errors summed over the corpus, divided by reference length), and the scores of any
    ``evaluate`` module in ``metrics`` on the same pairs."""
    check_metric_names(metrics)
    refs, hyps = _nonempty(references, hypotheses)
    if not refs:
        return {name if name in SUPPORTED_METRICS else module_name(name): float("nan") for name in metrics}
    results = {}
    if "wer" in metrics:
        results["wer"] = float(jiwer.wer(refs, hyps))
    if "cer" in metrics:
        results["cer"] = float(jiwer.cer(refs, hyps))
    for name in metrics:
        if name not in SUPPORTED_METRICS:
            results.update(module_scores(name, refs, hyps))
    return results


def utterance_report(
    ids: Sequence[str],
    references: Sequence[str],
    hypotheses: Sequence[str],
    normalized_references: Sequence[str] | None = None,
    normalized_hypotheses: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per utterance: id, reference, hypothesis, word errors (sub/del/ins) and the reference length; with
    normalised forms also ``normalized_reference``, ``normalized_hypothesis`` and ``normalized_errors``; with
    ``outputs`` (a seq2seq model's text before the transcript normaliser) also ``output``."""
    rows = []
    for index, (utt_id, ref, hyp) in enumerate(zip(ids, references, hypotheses, strict=True)):
        sub, dele, ins, n_ref = _word_errors(ref, hyp)
        row = {
            "id": utt_id,
            "reference": ref,
            "hypothesis": hyp,
            "errors": sub + dele + ins,
            "substitutions": sub,
            "deletions": dele,
            "insertions": ins,
            "reference_words": n_ref,
        }
        if outputs:
            row["output"] = outputs[index]
        if normalized_references is not None and normalized_hypotheses is not None:
            norm_ref, norm_hyp = normalized_references[index], normalized_hypotheses[index]
            row["normalized_reference"] = norm_ref
            row["normalized_hypothesis"] = norm_hyp
            row["normalized_errors"] = sum(_word_errors(norm_ref, norm_hyp)[:3])
        rows.append(row)
    return rows


def _word_errors(ref: str, hyp: str) -> tuple[int, int, int, int]:
    if not ref.strip():
        return 0, 0, len(hyp.split()), 0
    out = jiwer.process_words(ref, hyp)
    return out.substitutions, out.deletions, out.insertions, len(ref.split())


def make_eval_normalizer(kind: str, english_spelling: dict[str, str] | None = None) -> Callable[[str], str] | None:
    """Whisper's text normalisers, as the Whisper fine-tuning event and the Open ASR leaderboard score with.

    ``english``: transformers' ``EnglishTextNormalizer`` (case, punctuation, fillers such as "um", contractions,
    spelled-out numbers to digits, "mr" -> "mister", British -> American spellings from ``english_spelling``, the
    mapping a Whisper tokenizer's ``normalizer.json`` holds; without one, spellings are left as they are).
    ``basic``: ``BasicTextNormalizer`` (case, punctuation and symbols, bracketed asides), for any language.
    ``none``: no normalised scores.
    """
    if kind not in EVAL_NORMALIZERS:
        raise UsageError(f"--eval_normalizer {kind!r}: use one of {', '.join(EVAL_NORMALIZERS)}.")
    if kind == "none":
        return None
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    normalizer = EnglishTextNormalizer(english_spelling or {}) if kind == "english" else BasicTextNormalizer()
    return lambda text: " ".join(normalizer(text).split())


def choose_eval_normalizer(
    requested: str | None, default: str, english_spelling: dict[str, str] | None = None
) -> Callable[[str], str] | None:
    """The ``--eval_normalizer`` asked for, else ``default``; logs which one scores ``eval_normalized_*``."""
    kind = requested or default
    if kind == "english" and not english_spelling:
        logger.info(
            "Normalised WER: Whisper's English normaliser without a British->American spelling map (the tokenizer "
            "has no normalizer.json), so spelling variants such as colour/color count as errors."
        )
    elif kind != "none":
        logger.info("Normalised WER: Whisper's %s text normaliser (--eval_normalizer to change).", kind)
    return make_eval_normalizer(kind, english_spelling)


def valid_ids(ids: Any, pad_token_id: int) -> np.ndarray:
    """Prediction ids with the Trainer's -100 padding replaced by the pad token, ready to decode."""
    ids = np.asarray(ids)
    return np.where(ids < 0, pad_token_id, ids)


class TranscriptMetrics:
    """``compute_metrics`` for the Trainer: predicted ids -> text, scored against the references.

    Keeps the hypotheses of the last evaluation (``hypotheses``) for the per-utterance report. With an
    ``eval_normalizer`` (:func:`make_eval_normalizer`) it also scores both sides normalised: ``normalized_wer``,
    ``normalized_cer`` next to the orthographic ``wer``, ``cer``.
    Subclasses say how ids become text (``decode``) and why all-empty output happens (``empty_hint``).
    """

    empty_hint = "the model emits nothing"

    def __init__(
        self,
        references: Sequence[str],
        metrics: Sequence[str],
        eval_normalizer: Callable[[str], str] | None = None,
    ) -> None:
        self.references = list(references)
        self.metrics = list(metrics)
        self.hypotheses: list[str] = []
        self.eval_normalizer = eval_normalizer
        self.normalized_references = [eval_normalizer(text) for text in self.references] if eval_normalizer else []
        self.normalized_hypotheses: list[str] = []
        self.outputs: list[str] = []

    def normalized_forms(self) -> dict[str, list[str]]:
        """Keyword arguments of :func:`utterance_report` for the normalised columns (none without a normaliser)."""
        if self.eval_normalizer is None:
            return {}
        return {
            "normalized_references": self.normalized_references,
            "normalized_hypotheses": self.normalized_hypotheses,
        }

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
        if self.eval_normalizer is not None:
            self.normalized_hypotheses = [self.eval_normalizer(text) for text in self.hypotheses]
        return self.score(self.hypotheses)

    def score(self, hypotheses: Sequence[str]) -> dict[str, float]:
        """The metrics of ``hypotheses`` (one per reference, in order), orthographic and normalised; keeps nothing."""
        results = error_rates(self.references, list(hypotheses), self.metrics)
        if self.eval_normalizer is not None:
            normalized = error_rates(self.normalized_references, [self.eval_normalizer(text) for text in hypotheses],
                                     self.metrics)  # fmt: skip
            results.update({f"normalized_{name}": value for name, value in normalized.items()})
        return results
