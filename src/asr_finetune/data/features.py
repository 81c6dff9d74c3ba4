"""Model inputs from samples: the feature extractor's output for one clip, and padding of Whisper's variable-length
features (long-form clips keep all their frames)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def window_frames(feature_extractor: Any) -> int | None:
    """Feature frames of a fixed-window model's input (Whisper: 3000), else None."""
    return getattr(feature_extractor, "nb_max_frames", None) if getattr(feature_extractor, "n_samples", None) else None


def extract_features(feature_extractor: Any, samples: np.ndarray, sampling_rate: int) -> Any:
    """The feature extractor's output for one clip; for a Whisper clip longer than its window, unclipped features
    with an attention mask (what long-form generation takes) instead of the first 30 s."""
    window = getattr(feature_extractor, "n_samples", None)
    if window and len(samples) > window:
        return feature_extractor(
            samples, sampling_rate=sampling_rate, truncation=False, padding="longest", return_attention_mask=True
        )
    return feature_extractor(samples, sampling_rate=sampling_rate)


def pad_features(features: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (mel bins, frames) arrays of different lengths: right-padded, with a frame-level attention mask."""
    arrays = [torch.as_tensor(np.asarray(f), dtype=torch.float32) for f in features]
    longest = max(array.shape[-1] for array in arrays)
    batch = torch.zeros(len(arrays), arrays[0].shape[0], longest)
    mask = torch.zeros(len(arrays), longest, dtype=torch.long)
    for row, array in enumerate(arrays):
        batch[row, :, : array.shape[-1]] = array
        mask[row, : array.shape[-1]] = 1
    return batch, mask
