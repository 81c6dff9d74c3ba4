"""Padding collators and samplers: turning items into batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

LABEL_PAD = -100


def pad_labels(labels: Sequence[Sequence[int]], pad_to_multiple_of: int | None = None) -> torch.Tensor:
    """Right-pad label id lists with -100 (ignored by the losses) into one tensor."""
    length = max((len(seq) for seq in labels), default=0)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = torch.full((len(labels), length), LABEL_PAD, dtype=torch.long)
    for row, seq in enumerate(labels):
        batch[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return batch


@dataclass
class CTCCollator:
    """Pads raw-audio inputs with the feature extractor and labels with -100."""

    feature_extractor: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        name = self.feature_extractor.model_input_names[0]
        batch = self.feature_extractor.pad(
            [{name: item[name]} for item in items],
            padding=True,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        if "labels" in items[0]:
            batch["labels"] = pad_labels([item["labels"] for item in items])
        return dict(batch)
