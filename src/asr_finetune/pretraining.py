"""wav2vec2 self-supervised pretraining: config checks, unlabeled data, masks and negatives, schedules, health.

Pure functions and small classes, no Accelerate: the training loop lives in :mod:`asr_finetune.pretraining_loop`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from transformers import AutoConfig, PretrainedConfig, Wav2Vec2ForPreTraining
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from .data import DropCounts, SplitConfig, drop_too_short_for_masks, prepare_split
from .errors import DataError, UsageError
from .modeling import encoder_frames

logger = logging.getLogger(__name__)

GRAD_NORM_RANGE = (0.5, 2.0)
"""Where the grad norm of a healthy wav2vec2 pretraining run stays (the reference README's advice)."""
VANISHED_GRAD_NORM = 1e-8
"""Below this the model has collapsed (transformers#14387 reports ~1e-19 with a contrastive loss of 0)."""


class PretrainingConfigError(UsageError):
    """A model config or feature extractor that wav2vec2 pretraining cannot use; the message names the setting."""


# ---------------------------------------------------------------------------------------------- model and config


def check_pretraining_setup(config: PretrainedConfig, feature_extractor: Any, source: str) -> None:
    """Refuse configs the contrastive objective does not work with, naming each setting to change."""
    problems = []
    if getattr(config, "model_type", None) != "wav2vec2":
        problems.append(f'model_type is {getattr(config, "model_type", None)!r}: only "wav2vec2" is supported')
    if getattr(config, "do_stable_layer_norm", None) is not True:
        problems.append(
            'set "do_stable_layer_norm": true in config.json (pretraining needs the pre-layer-norm encoder)'
        )
    if getattr(config, "feat_extract_norm", None) != "layer":
        problems.append(
            f'set "feat_extract_norm": "layer" in config.json (it is {getattr(config, "feat_extract_norm", None)!r}; '
            "group norm in the feature encoder is not supported for pretraining)"
        )
    if getattr(config, "apply_spec_augment", True) is not True:
        problems.append('set "apply_spec_augment": true in config.json (otherwise masked frames are not hidden)')
    if not getattr(feature_extractor, "do_normalize", False):
        problems.append(
            'set "do_normalize": true in preprocessor_config.json (only normalised inputs can be pretrained on)'
        )
    if problems:
        raise PretrainingConfigError(
            f"{source} cannot be used for wav2vec2 pretraining:\n  - " + "\n  - ".join(problems)
        )
    if getattr(config, "mask_feature_prob", 0.0) > 0:
        logger.warning("config.mask_feature_prob is %s; pretraining normally masks time only (0.0).",
                       config.mask_feature_prob)
    if config.mask_time_prob < 0.2:
        logger.warning(
            "mask_time_prob is %.2f: the contrastive task then has few targets (wav2vec 2.0 uses 0.65). "
            "Pass --mask_time_prob to change it.", config.mask_time_prob,
        )


def load_pretraining_config(
    model_name_or_path: str | None,
    config_name: str | None,
    mask_time_prob: float | None,
    mask_time_length: int | None,
    **kwargs: Any,
) -> PretrainedConfig:
    """The model config (``config_name`` wins over ``model_name_or_path``) with the masking flags applied."""
    config = AutoConfig.from_pretrained(config_name or model_name_or_path, **kwargs)
    if mask_time_prob is not None:
        config.mask_time_prob = mask_time_prob
    if mask_time_length is not None:
        config.mask_time_length = mask_time_length
    return config


def new_pretraining_model(config: PretrainedConfig, gradient_checkpointing: bool = False) -> Wav2Vec2ForPreTraining:
    """A randomly initialised model (pretraining never starts from the weights of ``model_name_or_path``)."""
    model = Wav2Vec2ForPreTraining(config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def decay_parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: weight matrices with ``weight_decay``; biases, norms and embeddings without.

    No decay for: 1-d parameters (biases, layer-norm scales, the mask embedding), the weight-norm magnitude of the
    positional convolution, and the quantizer codebook.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or name.endswith((".original0", "weight_g")) or "codevectors" in name
        (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------- data


def load_unlabeled_audio(
    split_config: SplitConfig,
    config_names: Sequence[str | None],
    split_names: Sequence[str],
    model_config: PretrainedConfig,
    sampling_rate: int,
    validation_split_percentage: int,
    seed: int,
) -> tuple[datasets.Dataset, datasets.Dataset | None, DropCounts]:
    """Load and concatenate every (config, split) pair, then hold out the first N% as validation.

    Rows are checked and filtered by duration from file headers (unreadable files stop the run, or are counted with
    ``on_bad_row='skip'``), and clips shorter than one mask span are dropped and counted. Several pairs are shuffled
    together with ``seed``. For a local dataset the config name is ignored and split names are split expressions
    (``train+validation``, ``train[:90%]``).
    """
    pieces, drops = [], DropCounts()
    for config_name, split_name in zip(config_names, split_names, strict=True):
        piece, piece_drops = prepare_split(dataclasses.replace(split_config, config_name=config_name), split_name, None)
        pieces.append(piece)
        for reason, count in piece_drops.counts.items():
            drops.add(reason, count, piece_drops.examples.get(reason, []))
    dataset = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces).shuffle(seed=seed)
    dataset = drop_too_short(dataset, model_config, sampling_rate, drops)
    if len(dataset) == 0:
        raise DataError(f"No usable clips left in {split_config.dataset_name} (dropped: {drops.summary()}).")
    if validation_split_percentage <= 0:
        return dataset, None, drops
    num_validation = max(1, len(dataset) * validation_split_percentage // 100)
    if num_validation >= len(dataset):
        raise DataError(
            f"--validation_split_percentage {validation_split_percentage} leaves no training rows of {len(dataset)}."
        )
    validation = dataset.select(range(num_validation))
    return dataset.select(range(num_validation, len(dataset))), validation, drops


def drop_too_short(
    dataset: datasets.Dataset, config: PretrainedConfig, sampling_rate: int, drops: DropCounts
) -> datasets.Dataset:
    """Drop clips with no more feature frames than one mask span (they cannot be masked), counting them."""
    samples = [round(duration * sampling_rate) for duration in dataset["duration"]]
    frames = encoder_frames(config, samples, add_adapter=False).tolist()
    # Masked spans need room for an unmasked frame: one frame more than the span.
    return drop_too_short_for_masks(dataset, frames, config.mask_time_length + 1, drops)


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


@dataclass
class StepTotals:
    """Sums over micro-batches (and, after :meth:`reduce`, over processes) for logging."""

    loss: float = 0.0
    contrastive_loss: float = 0.0
    diversity_loss: float = 0.0
    perplexity: float = 0.0
    micro_batches: float = 0.0
    masked_frames: float = 0.0
    frames: float = 0.0
    audio_seconds: float = 0.0
    grad_norm: float = 0.0
    optimizer_steps: float = 0.0

    FIELDS = ("loss", "contrastive_loss", "diversity_loss", "perplexity", "micro_batches", "masked_frames", "frames",
              "audio_seconds", "grad_norm", "optimizer_steps")

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([getattr(self, name) for name in self.FIELDS], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> StepTotals:
        return cls(**dict(zip(cls.FIELDS, values.tolist(), strict=True)))

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """Per-masked-frame losses, mean perplexity and grad norm, % of frames masked."""
        masked = max(self.masked_frames, 1.0)
        out = {
            "loss": self.loss / masked,
            "contrastive_loss": self.contrastive_loss / masked,
            "diversity_loss": self.diversity_loss / masked,
            "perplexity": self.perplexity / max(self.micro_batches, 1.0),
            "masked_pct": 100.0 * self.masked_frames / max(self.frames, 1.0),
        }
        if self.optimizer_steps:
            out["grad_norm"] = self.grad_norm / self.optimizer_steps
        return {f"{prefix}{key}": value for key, value in out.items()}


# ---------------------------------------------------------------------------------------------- health


@dataclass
class HealthMonitor:
    """Warns when the grad norm stays outside 0.5..2 for ``patience`` steps, or the codebook collapses.

    A collapsed quantizer uses about one code per group (perplexity near ``num_groups``), the contrastive loss falls
    to 0 and the grad norm vanishes (transformers#14387). Each warning is given once per episode.
    """

    num_groups: int
    num_codevectors: int
    patience: int = 100
    grad_norm_range: tuple[float, float] = GRAD_NORM_RANGE
    _outside: int = 0
    _warned: set[str] = field(default_factory=set)

    @property
    def collapse_perplexity(self) -> float:
        return 2.0 * self.num_groups

    def check(self, step: int, grad_norm: float, perplexity: float) -> list[str]:
        """Feed one optimizer step; returns the warnings to log (empty when healthy or already warned)."""
        messages = []
        low, high = self.grad_norm_range
        self._outside = self._outside + 1 if not (low <= grad_norm <= high) else 0
        if self._outside >= self.patience:
            if "grad_norm" not in self._warned:
                self._warned.add("grad_norm")
                messages.append(
                    f"step {step}: grad norm has been outside {low}..{high} for {self._outside} steps (now "
                    f"{grad_norm:.3g}). Pretraining is unstable outside this range: tune --learning_rate, "
                    "--num_warmup_steps, the batch size, or set --max_grad_norm."
                )
        else:
            self._warned.discard("grad_norm")
        vanished = math.isfinite(grad_norm) and grad_norm < VANISHED_GRAD_NORM
        collapsed = perplexity < self.collapse_perplexity or vanished
        if collapsed and "collapse" not in self._warned:
            self._warned.add("collapse")
            messages.append(
                f"step {step}: the quantizer looks collapsed (codevector perplexity {perplexity:.3g} of "
                f"{self.num_codevectors} codes, grad norm {grad_norm:.3g}). Lower --learning_rate, raise "
                "--num_warmup_steps or the diversity_loss_weight in config.json, or restart from a checkpoint."
            )
        elif not collapsed:
            self._warned.discard("collapse")
        return messages
