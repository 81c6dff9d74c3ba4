"""Masks and negatives for wav2vec2's contrastive loss, the Gumbel temperature schedule, and the loss scale
across processes."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PretrainedConfig
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from asr_finetune.models.loading import encoder_frames

# ---------------------------------------------------------------------------------------------- masks and negatives


def sample_masks_and_negatives(
    config: PretrainedConfig, attention_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Span masks and negative indices for a padded batch, per utterance, never on padding.

    ``attention_mask`` is the sample-level mask of the padded inputs; it is reduced to feature frames so that masks
    and negatives stay inside each utterance. An utterance with fewer than two masked frames is left unmasked (there
    would be no negative to draw). Returns ``mask_time_indices`` (B, T) bool, ``sampled_negative_indices``
    (B, T, K) long (indices into the flattened batch, as the model expects) and ``sub_attention_mask`` (B, T).
    """
    batch_size = attention_mask.shape[0]
    num_frames = int(encoder_frames(config, attention_mask.shape[-1], add_adapter=False))
    lengths = encoder_frames(config, attention_mask.sum(-1), add_adapter=False)
    frame_mask = torch.arange(num_frames)[None, :] < lengths[:, None]
    mask = np.zeros((batch_size, num_frames), dtype=bool)
    if 0 < config.mask_time_length <= num_frames and config.mask_time_prob > 0:
        mask = _compute_mask_indices(
            (batch_size, num_frames), config.mask_time_prob, config.mask_time_length,
            attention_mask=frame_mask.long(), min_masks=getattr(config, "mask_time_min_masks", 0),
        )
        mask &= frame_mask.numpy()  # the helper pads short rows with a dummy span that can land on padding
        mask[mask.sum(-1) < 2] = False
    negatives = np.zeros((batch_size, num_frames, config.num_negatives), dtype=np.int64)
    for row in range(batch_size):
        if mask[row].any():
            row_negatives = _sample_negative_indices((1, num_frames), config.num_negatives, mask[row : row + 1])
            negatives[row] = row_negatives[0] + row * num_frames
    return {
        "mask_time_indices": torch.from_numpy(mask),
        "sampled_negative_indices": torch.from_numpy(negatives),
        "sub_attention_mask": frame_mask,
    }


# ---------------------------------------------------------------------------------------------- schedules and loss


def gumbel_temperature(step: int, maximum: float, minimum: float, decay: float) -> float:
    """Gumbel-softmax temperature for optimizer step ``step`` (0-based): ``max(maximum * decay**step, minimum)``."""
    return max(maximum * decay**step, minimum)


def loss_multiplier(total_masked_frames: float, num_processes: int) -> float:
    """Factor turning a process's summed loss into its share of the mean over all masked frames of the step.

    The model's loss is a sum over masked frames; data-parallel training averages gradients over processes.
    Multiplying each micro-batch's sum by ``num_processes / total`` (``total``: masked frames of every micro-batch
    of the step on every process) makes the update the gradient of the mean loss per masked frame, whatever the
    number of processes, batch size or accumulation steps.
    """
    return num_processes / max(float(total_masked_frames), 1.0)
