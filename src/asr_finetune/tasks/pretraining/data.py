"""Unlabeled audio for pretraining: every (config, split) pair loaded and checked, clips too short for the masks
dropped, a validation share held out; the collator that draws masks and negatives per batch."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch
from transformers import PretrainedConfig

from asr_finetune.data.collators import audio_stats, pad_inputs, static_length, usable_items
from asr_finetune.data.loading import SplitConfig, drop_too_short_for_masks, prepare_split
from asr_finetune.data.report import DropCounts, log_splits, write_data_report
from asr_finetune.errors import DataError
from asr_finetune.models.loading import encoder_frames
from asr_finetune.tasks.pretraining.arguments import PretrainingArguments
from asr_finetune.tasks.pretraining.masks import sample_masks_and_negatives

logger = logging.getLogger(__name__)


@dataclass
class PretrainingCollator:
    """Pads raw audio (with an attention mask) and draws span masks and negatives per utterance for wav2vec2
    pretraining; ``config`` is the model config (mask_time_prob, mask_time_length, num_negatives, conv layout)."""

    feature_extractor: Any
    config: Any
    pad_to_multiple_of: int | None = None
    static_lengths: tuple[int, ...] = ()

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:

        items, skipped = usable_items(items)
        length = static_length(items, self.feature_extractor.model_input_names[0], self.static_lengths)
        batch = pad_inputs(self.feature_extractor, items, self.pad_to_multiple_of, length, return_attention_mask=True)
        masks = sample_masks_and_negatives(self.config, batch["attention_mask"])
        fixed = None if length is None else length / self.feature_extractor.sampling_rate
        return {**batch, **masks, **audio_stats(items, fixed, skipped)}


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
