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

from .batching import BatchingArguments
from .data import (
    AudioSourceArguments,
    DropCounts,
    SplitConfig,
    drop_too_short_for_masks,
    log_splits,
    prepare_split,
    write_data_report,
)
from .errors import DataError, UsageError
from .modeling import encoder_frames, load_feature_extractor, require_model_or_config

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- arguments


@dataclass(kw_only=True)
class PretrainingArguments(AudioSourceArguments):
    """Flags of run_wav2vec2_pretraining_no_trainer.py: the reference script's, plus resume/precision/report extras.

    Shares the data flags of :class:`asr_finetune.data.AudioSourceArguments`; only the duration limits default
    differently (the reference script's 3-5 s crops)."""

    output_dir: str = field(metadata={"help": "Where checkpoints and the pretrained model (+ feature extractor) go."})
    dataset_config_names: list[str] | None = field(
        default=None,
        metadata={"help": "Hub configs, one per --dataset_split_names entry (ignored for a local dataset)."},
    )
    dataset_split_names: list[str] = field(
        default_factory=lambda: ["train"],
        metadata={"help": "Splits (expressions such as 'train+validation', 'train[:90%%]'), concatenated."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    validation_split_percentage: int = field(
        default=1, metadata={"help": "Hold out this %% of the training rows (at least one) for a validation pass."}
    )
    train_cache_file_name: str | None = field(
        default=None, metadata={"help": "Accepted for compatibility; nothing decoded is cached."}
    )
    validation_cache_file_name: str | None = field(
        default=None, metadata={"help": "Accepted for compatibility; nothing decoded is cached."}
    )
    logging_steps: int = field(default=500, metadata={"help": "Log training figures every N optimizer steps."})
    saving_steps: int = field(default=500, metadata={"help": "Write a resumable checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Default: resume from the newest complete checkpoint in output_dir. 'false': start fresh."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Model dir or Hub id whose config and feature extractor are used; weights start random."},
    )
    config_name: str | None = field(default=None, metadata={"help": "Config to use instead of the model's."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Validation batch size per process."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases, norms, codebook)."})
    num_train_epochs: int = field(default=3, metadata={"help": "Epochs, unless --max_train_steps is set."})
    max_train_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides the epochs."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip the gradient norm (default: no clip)."})
    lr_scheduler_type: str = field(
        default="linear",
        metadata={"help": "Learning-rate schedule.", "choices": ["linear", "cosine", "cosine_with_restarts",
                                                                  "polynomial", "constant", "constant_with_warmup"]},
    )
    num_warmup_steps: int = field(default=0, metadata={"help": "Warm-up steps of the learning-rate schedule."})
    seed: int = field(default=0, metadata={"help": "Seed for weights, data order, masks and negatives."})
    max_gumbel_temperature: float = field(default=2.0, metadata={"help": "Gumbel-softmax temperature at step 0."})
    min_gumbel_temperature: float = field(default=0.5, metadata={"help": "Floor of the Gumbel temperature."})
    gumbel_temperature_decay: float = field(default=0.999995, metadata={"help": "Temperature factor per step."})
    max_duration_in_seconds: float = field(default=5.0, metadata={"help": "Drop longer clips (counted)."})
    min_duration_in_seconds: float = field(default=3.0, metadata={"help": "Drop shorter clips (counted)."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad input lengths to a multiple."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    mask_time_prob: float | None = field(
        default=None, metadata={"help": "Share of frames that start a masked span (default: the config's)."}
    )
    mask_time_length: int | None = field(default=None, metadata={"help": "Frames per masked span (config's)."})
    mixed_precision: str | None = field(
        default=None,
        metadata={"help": "no, fp16 or bf16 (default: what `accelerate launch` / its config says).",
                  "choices": ["no", "fp16", "bf16"]},
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when an accelerator is present."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Processes decoding training audio."})
    report_to: list[str] | None = field(
        default=None, metadata={"help": "Trackers: tensorboard, wandb, all (when installed). Default: none."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (datasets, models, upload)."})

    def __post_init__(self) -> None:
        require_model_or_config(self.model_name_or_path, self.config_name)
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UsageError(f"--max_train_steps {self.max_train_steps}: give a positive number of steps.")
        configs = self.dataset_config_names or [None]
        if len(configs) == 1:
            configs = configs * len(self.dataset_split_names)
        if len(configs) != len(self.dataset_split_names):
            raise UsageError(
                f"--dataset_config_names has {len(configs)} entries and --dataset_split_names "
                f"{len(self.dataset_split_names)}: give one config per split (or a single config for all)."
            )
        self.dataset_config_names = configs
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError("--validation_split_percentage must be in 0..99.")
        if self.min_gumbel_temperature > self.max_gumbel_temperature:
            raise UsageError("--min_gumbel_temperature is above --max_gumbel_temperature.")
        if self.gradient_accumulation_steps < 1 or self.logging_steps < 1 or self.saving_steps < 1:
            raise UsageError("--gradient_accumulation_steps, --logging_steps and --saving_steps must be >= 1.")

GRAD_NORM_RANGE = (0.5, 2.0)
"""Where the grad norm of a healthy wav2vec2 pretraining run stays (the reference README's advice)."""
VANISHED_GRAD_NORM = 1e-8
"""Below this the model has collapsed (transformers#14387 reports ~1e-19 with a contrastive loss of 0)."""


class PretrainingConfigError(UsageError):
    """A model config or feature extractor that wav2vec2 pretraining cannot use; the message names the setting."""


SCRIPT = "run_wav2vec2_pretraining_no_trainer.py"
"""The entry script (in scripts/) this module's steps serve; its recipes live in configs/<this module's name>/."""
ARGUMENTS: tuple[type, ...] = (PretrainingArguments, BatchingArguments)
"""The script's own argument groups."""
TRAINER: str | None = None
"""Which Trainer runs it: "trainer", "seq2seq_trainer", or None (its own Accelerate loop)."""


# ---------------------------------------------------------------------------------------------- model and config


def load_config_and_features(args: PretrainingArguments, **pretrained: Any) -> tuple[PretrainedConfig, Any]:
    """Step 2 of the pretraining script: the model config (with the mask flags applied) and feature extractor,
    checked before any data is read."""
    source = args.config_name or args.model_name_or_path
    config = load_pretraining_config(
        args.model_name_or_path, args.config_name, args.mask_time_prob, args.mask_time_length, **pretrained
    )
    feature_extractor = load_feature_extractor(args.model_name_or_path or args.config_name, **pretrained)
    check_pretraining_setup(config, feature_extractor, source)
    return config, feature_extractor


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


def load_splits(args: PretrainingArguments, model_config: PretrainedConfig, sampling_rate: int,
                is_main_process: bool) -> dict[str, datasets.Dataset]:
    """Step 4 of the pretraining script: "train" (and "validation" when held out), checked and filtered, logged and
    written to data_report.json."""
    split_config = args.split_config(text_column=None, cache_dir=args.cache_dir, token=args.hub_token)
    train_rows, eval_rows, drops = load_unlabeled_audio(
        split_config, args.dataset_config_names, args.dataset_split_names, model_config, sampling_rate,
        args.validation_split_percentage, args.seed,
    )
    splits = {"train": train_rows, **({"validation": eval_rows} if eval_rows else {})}
    split_drops = {"train": drops, "validation": DropCounts()}  # validation is held out after filtering
    log_splits(splits, split_drops)
    if is_main_process:
        write_data_report(args.output_dir, splits, split_drops)
    if args.train_cache_file_name or args.validation_cache_file_name:
        logger.info("--train/validation_cache_file_name are not used: audio is decoded on the fly, never cached.")
    return splits


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
