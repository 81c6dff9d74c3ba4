"""Which Trainer and TrainingArguments classes a run uses, and what our Trainer classes add to the stock ones."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from .args import CommandLine
from .batching import IDS_KEY, SKIPPED_KEY, STAT_KEYS, STATIC_BUCKETS, static_collator
from .ctc import CTCEvalMixin
from .curves import TrainingCurvesCallback
from .errors import UsageError
from .files import give_default_mode
from .joint_ctc import JointCTCMixin
from .nonfinite import NonFiniteGuard, check_weights_finite
from .redaction import secrets_removed
from .seq2seq import Seq2SeqEvalMixin
from .streaming import POSITION_KEY
from .throughput import ThroughputMeter

logger = logging.getLogger(__name__)


def describe_world(args: Any) -> str:
    """One log line naming the processes a run really has, so a launch that silently split is visible."""
    backend = getattr(args, "ddp_backend", None) or (args.distributed_state.backend if args.world_size > 1 else None)
    return f"World: {args.world_size} process(es), this is rank {args.process_index}, device {args.device}" + (
        f", backend {backend}" if backend else ""
    )


def check_precision(args: Any) -> None:
    """``--fp16`` on a CPU run would silently autocast to half precision on the CPU: refuse it by name."""
    if args.fp16 and args.device.type == "cpu":
        raise UsageError(
            "--fp16 needs a CUDA GPU, and this run is on the CPU (no GPU found, or --use_cpu). Drop --fp16 "
            "(CPU training is fp32), or use --bf16 on a CPU that supports it."
        )


def adapt_training_arguments(args: Any) -> None:
    """Settings that only make sense on the device at hand (pinned memory needs an accelerator)."""
    if not torch.cuda.is_available():
        args.dataloader_pin_memory = False
    # Our datasets yield only model inputs plus the per-item ``seconds`` the collators turn into batch stats;
    # the stock column filter would drop ``seconds`` before the collator sees it.
    args.remove_unused_columns = False


def wants_length_grouping(args: Any) -> bool:
    """True for ``--train_sampling_strategy group_by_length`` (5.x) or ``--group_by_length`` (4.x)."""
    return getattr(args, "train_sampling_strategy", None) == "group_by_length" or bool(
        getattr(args, "group_by_length", False)
    )


PRIVATE_TRAINER_HOOKS = ("_get_train_sampler", "_get_eval_sampler", "_prepare_inputs", "_save",
                         "_load_from_checkpoint", "get_batch_samples")
"""Trainer internals we override or call (checked against transformers 4.55 and 5.24): ``_get_train_sampler``
(length grouping by header durations), ``_get_eval_sampler`` (evaluation in dataset order), ``_prepare_inputs``
(throughput and clip ids out of the batch), ``_save`` (finite weights, no token in training_args.bin),
``_load_from_checkpoint`` (the weights of a finished run, :mod:`asr_finetune.finetuning`), ``get_batch_samples``
(loader wait). tests/test_backends.py fails when transformers renames one of them."""


def compile_per_shape(buckets: int) -> None:
    """torch.compile settings for ``--static_shapes``: room for every shape of train and evaluation batches (two
    batch sizes per bucket, and evaluation's) before dynamo gives up and runs eager. With :func:`mark_static`
    on each batch, each shape gets a static graph of its own."""
    import torch._dynamo

    config = torch._dynamo.config
    limit_name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit_name, max(getattr(config, limit_name), 4 * buckets + 8))
    logger.info("torch.compile: a static graph per input shape, up to %d shapes.", getattr(config, limit_name))


def mark_static(inputs: dict[str, Any]) -> dict[str, Any]:
    """Tell dynamo that the batch's tensors have static shapes, so a new shape compiles a graph of its own instead
    of a dynamic one (its default at the second shape). Only the inputs: tensors derived from the data inside
    the model (the CTC loss's flattened targets) may still go dynamic, which saves a compile per batch there."""
    import torch._dynamo

    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            torch._dynamo.mark_static(value)
    return inputs


class SpeechSamplingMixin:
    """What our trainers add to the stock ones.

    - Training batches from duration buckets (``batching``), or grouped by header durations: the stock Trainer
      computes lengths by decoding every clip (hours on a large corpus).
    - Evaluation always in dataset order: transformers 5.x length-groups the evaluation set too, which
      scrambles the order of the predictions.
    - Throughput accounting: audio seconds per second, padding fraction, loader wait share, in every training
      log line and in ``throughput.totals()``.
    - ``training_curves.png`` in the output dir, redrawn at each evaluation (:mod:`asr_finetune.curves`).
    """

    def __init__(
        self, *args: Any, batching: Any = None, on_nonfinite_loss: str = "stop", **kwargs: Any
    ) -> None:
        self.batching = batching
        self.throughput = ThroughputMeter()
        self.nonfinite = NonFiniteGuard(on_nonfinite_loss)
        super().__init__(*args, **kwargs)
        self.static_compile = bool(batching is not None and batching.static_shapes and self.args.torch_compile)
        if self.static_compile:
            compile_per_shape(batching.num_duration_buckets or STATIC_BUCKETS)
        self.add_callback(_NonFiniteCallback(self))
        self.add_callback(TrainingCurvesCallback())

    def get_train_dataloader(self) -> DataLoader:
        if hasattr(self.train_dataset, "loader"):  # a stream (asr_finetune.streaming): it makes its own batches
            return self.train_dataset.loader(self.data_collator, self.args)
        if not (self.batching is not None and self.batching.enabled):
            return super().get_train_dataloader()
        args = self.args
        sampler = self.batching.sampler(
            self.train_dataset.durations,
            args.per_device_train_batch_size,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            num_replicas=args.world_size,
            rank=args.process_index,
            drop_last=args.dataloader_drop_last,
        )
        # evaluation batches are padded to the same lengths, so a compiled model meets no new shapes there either
        self.data_collator = static_collator(self.data_collator, sampler)
        workers = args.dataloader_num_workers
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
        )
        prepared = self.accelerator.prepare(loader)
        # The sampler already gives each rank its own batches: make accelerate's sharding wrapper a pass-through.
        shard = getattr(prepared, "batch_sampler", None)
        if shard is not None and getattr(shard, "batch_sampler", None) is sampler:
            shard.num_processes, shard.process_index = 1, 0
        return prepared

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        durations = getattr(dataset, "durations", None)
        if durations is not None and wants_length_grouping(self.args):
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=durations
            )
        if wants_length_grouping(self.args) and durations is None:
            raise UsageError("Length grouping needs a dataset with header durations (asr_finetune SpeechDataset).")
        return super()._get_train_sampler(train_dataset) if train_dataset is not None else super()._get_train_sampler()

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        return SequentialSampler(eval_dataset)

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs.pop(POSITION_KEY, None)  # where a streamed batch came from (recorded by its loader)
        stats = [inputs.pop(key, None) for key in STAT_KEYS]
        ids, skipped = inputs.pop(IDS_KEY, None), inputs.pop(SKIPPED_KEY, 0)
        if stats[0] is not None and self.model.training:
            self.throughput.add_batch(float(stats[0]), float(stats[1]), int(skipped))
            self.nonfinite.add_batch(ids)
        inputs = super()._prepare_inputs(inputs)
        return mark_static(inputs) if self.static_compile else inputs

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(model, inputs, *args, **kwargs)
        self.nonfinite.add_loss(float(loss.detach()))
        return loss

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        """Every model save (checkpoints, final model) passes here: refuse NaN/inf weights, and keep the Hub token
        out of training_args.bin (checked against transformers 4.55 and 5.24)."""
        check_weights_finite(self.model, output_dir or self.args.output_dir)
        with secrets_removed(self.args):
            super()._save(output_dir, state_dict=state_dict)
        give_default_mode(output_dir or self.args.output_dir)

    def get_batch_samples(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        batches = super().get_batch_samples(*args, **kwargs)
        self.throughput.add_wait(time.perf_counter() - started)
        return batches

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            window = self.throughput.window()
            if self.args.world_size > 1:
                summed = self.accelerator.reduce(torch.tensor([window["audio_seconds_per_second"]]), "sum")
                window["audio_seconds_per_second"] = round(float(summed[0]), 3)
            logs.update(window)
            if self.throughput.bad_rows_skipped:
                logs["bad_rows_skipped"] = self.throughput.bad_rows_skipped
            if self.nonfinite.skipped_steps:
                logs["nonfinite_steps_skipped"] = self.nonfinite.skipped_steps
        super().log(logs, *args, **kwargs)


class _NonFiniteCallback(TrainerCallback):
    """Checks the gradients between clipping and the optimizer step (the Trainer's ``on_pre_optimizer_step``)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.nonfinite.start_step()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.nonfinite.check(self.trainer.model.parameters(), state.global_step + 1)


class SpeechTrainer(CTCEvalMixin, SpeechSamplingMixin, Trainer):
    """Trainer for CTC models."""


class SpeechSeq2SeqTrainer(Seq2SeqEvalMixin, JointCTCMixin, SpeechSamplingMixin, Seq2SeqTrainer):
    """Trainer for encoder-decoder models (generation in evaluation, optional joint CTC loss)."""


def training_arguments_class(seq2seq: bool = False) -> type:
    return Seq2SeqTrainingArguments if seq2seq else TrainingArguments


def trainer_class(seq2seq: bool = False) -> type:
    return SpeechSeq2SeqTrainer if seq2seq else SpeechTrainer


GAUDI_FLAGS = (
    "use_habana",
    "use_lazy_mode",
    "gaudi_config_name",
    "throughput_warmup_steps",
    "use_hpu_graphs",
    "use_hpu_graphs_for_training",
    "use_hpu_graphs_for_inference",
    "sdp_on_bf16",
    "distribution_strategy",
    "non_blocking_data_copy",
    "pipelining_fwd_bwd",
    "adjust_throughput",
    "ignore_eos",
)
HABANA_HINT = (
    "--use_habana needs optimum-habana and Habana's SynapseAI software (a Gaudi machine): there, "
    "pip install 'asr-finetune[hpu]' (optimum-habana 1.21 with transformers 4.55). On CPU or CUDA, drop "
    "--use_habana and the Gaudi flags."
)


class BackendError(UsageError):
    """A device/backend request that cannot work here; the message says what to change or install."""


@dataclass(frozen=True)
class Backend:
    """The Trainer and TrainingArguments classes of a run: stock (CPU/CUDA) or optimum-habana's (HPU)."""

    name: str
    arguments_class: type
    trainer_class: type


def select_backend(command: CommandLine | Sequence[str], seq2seq: bool = False) -> Backend:
    """Stock Trainer classes, or optimum-habana's Gaudi classes for ``--use_habana``; checked before any work."""
    command = command if isinstance(command, CommandLine) else CommandLine.read(command)
    flags = command.flags()
    if not command.is_on("use_habana"):
        gaudi_only = [f"--{name}" for name in GAUDI_FLAGS if name in flags and name != "use_habana"]
        if gaudi_only:
            raise BackendError(f"{', '.join(gaudi_only)}: Gaudi flag(s) that need --use_habana. {HABANA_HINT}")
        return Backend("torch", training_arguments_class(seq2seq), trainer_class(seq2seq))
    if command.is_on("fp16"):
        raise BackendError("--fp16 is not supported with --use_habana: Gaudi trains in bf16. Use --bf16 instead.")
    try:
        from optimum.habana import GaudiSeq2SeqTrainingArguments, GaudiTrainingArguments

        from .gaudi_trainers import SpeechGaudiSeq2SeqTrainer, SpeechGaudiTrainer
    except Exception as err:  # ImportError, or (optimum-habana 1.21 without SynapseAI) an IndexError reading hl-smi

        raise BackendError(f"{HABANA_HINT} ({err})") from err
    if seq2seq:
        return Backend("habana", GaudiSeq2SeqTrainingArguments, SpeechGaudiSeq2SeqTrainer)
    return Backend("habana", GaudiTrainingArguments, SpeechGaudiTrainer)
