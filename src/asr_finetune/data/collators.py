"""Padding collators: turning items into batches (CTC, seq2seq), with the bookkeeping each batch carries."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from asr_finetune.data.features import pad_features
from asr_finetune.errors import DataError

logger = logging.getLogger(__name__)

LABEL_PAD = -100
STAT_KEYS = ("audio_seconds", "padded_seconds")
"""Batch keys a collator adds for throughput accounting; the trainer removes them before the forward pass."""
BAD_ROW_KEY = "bad_row"
"""An item that could not be decoded under ``--on_bad_row skip``: the collators leave it out and count it."""
IDS_KEY = "utterance_ids"
SKIPPED_KEY = "bad_rows_skipped"
LONGEST_KEY = "longest_seconds"
"""The batch's longest clip in seconds: evaluation caps generated tokens by it."""
BOOKKEEPING_KEYS = (*STAT_KEYS, IDS_KEY, SKIPPED_KEY, LONGEST_KEY)
"""Every key a collator adds beside the model inputs (removed before the forward pass)."""
STATIC_LABEL_MULTIPLE = 16
"""Under ``--static_shapes`` label lengths are padded to a multiple of this, so decoders see few lengths too."""


def usable_items(items: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The items that decoded, and the ids of those skipped under ``--on_bad_row skip``."""
    good = [item for item in items if BAD_ROW_KEY not in item]
    bad = [str(item[BAD_ROW_KEY]) for item in items if BAD_ROW_KEY in item]
    if not good:
        raise DataError(f"Every clip of a batch failed to decode ({', '.join(bad)}): check these files.")
    return good, bad


def audio_stats(
    items: Sequence[dict[str, Any]], fixed_seconds: float | None = None, skipped: Sequence[str] = ()
) -> dict[str, Any]:
    """Speech seconds in a batch and the seconds it occupies once padded (``fixed_seconds`` per item for models
    whose inputs always have one length, such as Whisper's 30 s windows), the batch's utterance ids (named when a
    step goes wrong), how many of its rows were skipped as undecodable and its longest clip's seconds. Items carry
    ``seconds`` and ``id``."""
    seconds = [float(item.get("seconds", 0.0)) for item in items]
    padded = len(seconds) * (fixed_seconds if fixed_seconds is not None else max(seconds, default=0.0))
    return {
        "audio_seconds": torch.tensor(sum(seconds)),
        "padded_seconds": torch.tensor(padded),
        IDS_KEY: [str(item.get("id", "")) for item in items],
        SKIPPED_KEY: len(skipped),
        LONGEST_KEY: max(seconds, default=0.0),
    }


def pad_labels(labels: Sequence[Sequence[int]], pad_to_multiple_of: int | None = None) -> torch.Tensor:
    """Right-pad label id lists with -100 (ignored by the losses) into one tensor."""
    length = max((len(seq) for seq in labels), default=0)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = torch.full((len(labels), length), LABEL_PAD, dtype=torch.long)
    for row, seq in enumerate(labels):
        batch[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return batch


def static_length(items: Sequence[dict[str, Any]], name: str, lengths: Sequence[int]) -> int | None:
    """The smallest of ``lengths`` (sorted) that holds the longest ``name`` input of ``items``, or that input's own
    length when none does; None without ``lengths`` (pad to the longest, as usual)."""
    if not lengths:
        return None
    longest = max(np.shape(item[name])[-1] for item in items)
    return next((length for length in lengths if length >= longest), longest)


def pad_inputs(
    feature_extractor: Any,
    items: Sequence[dict[str, Any]],
    pad_to_multiple_of: int | None = None,
    length: int | None = None,
    **kwargs: Any,
) -> Any:
    """Pad the model inputs of ``items`` (the feature extractor's first input name) into one batch of tensors: to
    the longest, or to ``length`` when given."""
    name = feature_extractor.model_input_names[0]
    return feature_extractor.pad(
        [{name: item[name]} for item in items],
        padding="max_length" if length else True,
        max_length=length,
        pad_to_multiple_of=None if length else pad_to_multiple_of,
        return_tensors="pt",
        **kwargs,
    )


@dataclass
class CTCCollator:
    """Pads raw-audio inputs with the feature extractor and labels with -100."""

    feature_extractor: Any
    pad_to_multiple_of: int | None = None
    static_lengths: tuple[int, ...] = ()
    """``--static_shapes``: input lengths (samples, sorted) a batch is padded up to; see :func:`static_collator`."""

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        items, skipped = usable_items(items)
        window = self.window_seconds()
        lengths = () if window is not None else self.static_lengths
        length = static_length(items, self.feature_extractor.model_input_names[0], lengths)
        batch = pad_inputs(self.feature_extractor, items, self.pad_to_multiple_of, length)
        if "labels" in items[0]:
            multiple = STATIC_LABEL_MULTIPLE if lengths else None
            batch["labels"] = pad_labels([item["labels"] for item in items], multiple)
        if length is not None:
            window = length / self.feature_extractor.sampling_rate
        return {**batch, **audio_stats(items, window, skipped)}

    def window_seconds(self) -> float | None:
        """The fixed input length every clip is padded to, if the model has one (counted as padding)."""
        return None


@dataclass
class Seq2SeqCollator(CTCCollator):
    """Pads inputs like :class:`CTCCollator` and labels with -100, then strips a leading decoder-start token.

    Labels come from the tokenizer with its start token (BART's ``<s>``, Whisper's ``<|startoftranscript|>``);
    the model prepends ``decoder_start_token_id`` itself when it shifts labels into decoder inputs, so the
    token is removed here (when every row starts with it). ``input_seconds``: the fixed window every input is
    padded to (Whisper: 30 s), counted as padding in the throughput figures.
    """

    decoder_start_token_id: int | None = None
    input_seconds: float | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        window = getattr(self.feature_extractor, "nb_max_frames", None) if self.input_seconds else None
        if window and any(np.shape(item["input_features"])[-1] > window for item in items if BAD_ROW_KEY not in item):
            batch = self._pad_long_features(items)
        else:
            batch = super().__call__(items)
        labels = batch.get("labels")
        start = self.decoder_start_token_id
        if labels is not None and start is not None and labels.shape[1] > 0 and bool((labels[:, 0] == start).all()):
            batch["labels"] = labels[:, 1:]
        return batch

    def window_seconds(self) -> float | None:
        return self.input_seconds

    def _pad_long_features(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Evaluation batches with clips longer than Whisper's window: unclipped features, right-padded, with the
        frame-level attention mask long-form generation needs (see :mod:`asr_finetune.evaluation.longform`)."""
        items, skipped = usable_items(items)
        features, mask = pad_features([item["input_features"] for item in items])
        batch = {"input_features": features, "attention_mask": mask}
        if "labels" in items[0]:
            batch["labels"] = pad_labels([item["labels"] for item in items])
        return {**batch, **audio_stats(items, skipped=skipped)}


def static_collator(collator: Any, sampler: Any) -> Any:
    """``collator`` padding inputs to ``sampler``'s static lengths when it draws static batches; else ``collator``.

    Models whose inputs already have one length (Whisper's 30 s window) are left as they are."""
    if not getattr(sampler, "static", False) or not hasattr(collator, "static_lengths"):
        return collator
    if getattr(collator, "window_seconds", lambda: None)() is not None:
        logger.info("--static_shapes: this model's inputs already have one length (its window); nothing to pad.")
        return collator
    lengths = sampler.static_lengths(collator.feature_extractor.sampling_rate)
    logger.info("Static shapes: training batches padded to %d input lengths (%s s).", len(lengths),
                ", ".join(f"{length / collator.feature_extractor.sampling_rate:.2f}" for length in lengths))
    return dataclasses.replace(collator, static_lengths=lengths)
