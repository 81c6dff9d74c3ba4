"""Which Trainer and TrainingArguments classes a run uses, and the launch environment they need."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import SequentialSampler
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler


def prepare_launch_environment() -> None:
    """Make Trainer/Accelerate see a multi-process CPU launch (torchrun, mpirun) as one distributed run.

    Without ACCELERATE_USE_CPU, two CPU processes started by torchrun each train their own copy.
    """
    world_size = int(os.environ.get("WORLD_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")))
    if world_size > 1 and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def adapt_training_arguments(args: Any) -> None:
    """Settings that only make sense on the device at hand (pinned memory needs an accelerator)."""
    if not torch.cuda.is_available():
        args.dataloader_pin_memory = False


def wants_length_grouping(args: Any) -> bool:
    """True for ``--train_sampling_strategy group_by_length`` (5.x) or ``--group_by_length`` (4.x)."""
    return getattr(args, "train_sampling_strategy", None) == "group_by_length" or bool(
        getattr(args, "group_by_length", False)
    )


class SpeechSamplingMixin:
    """Training batches grouped by durations read from headers; evaluation always in dataset order.

    The stock Trainer computes lengths by decoding every clip (hours on a large corpus) and, in
    transformers 5.x, also length-groups the evaluation set, which scrambles the prediction order.
    """

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        durations = getattr(dataset, "durations", None)
        if durations is not None and wants_length_grouping(self.args):
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=durations
            )
        if wants_length_grouping(self.args) and durations is None:
            raise ValueError("Length grouping needs a dataset with header durations (asr_finetune SpeechDataset).")
        return super()._get_train_sampler(train_dataset) if train_dataset is not None else super()._get_train_sampler()

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        return SequentialSampler(eval_dataset)


class SpeechTrainer(SpeechSamplingMixin, Trainer):
    """Trainer for CTC models."""


class SpeechSeq2SeqTrainer(SpeechSamplingMixin, Seq2SeqTrainer):
    """Trainer for encoder-decoder models (generation in evaluation)."""


def training_arguments_class(seq2seq: bool = False) -> type:
    return Seq2SeqTrainingArguments if seq2seq else TrainingArguments


def trainer_class(seq2seq: bool = False) -> type:
    return SpeechSeq2SeqTrainer if seq2seq else SpeechTrainer
