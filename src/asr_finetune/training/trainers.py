"""Our Trainer classes: what they add to the stock ones (duration-bucket sampling, evaluation in dataset order,
throughput, the non-finite guard, curves, static shapes under torch.compile), and the private hooks they override."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, SequentialSampler
from transformers import Seq2SeqTrainer, Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from asr_finetune.data.collators import IDS_KEY, LONGEST_KEY, SKIPPED_KEY, STAT_KEYS, static_collator
from asr_finetune.data.sampling import STATIC_BUCKETS
from asr_finetune.data.streaming import POSITION_KEY
from asr_finetune.errors import UsageError
from asr_finetune.files import give_default_mode, write_json
from asr_finetune.models.joint_ctc import JointCTCMixin
from asr_finetune.training.curves import TrainingCurvesCallback
from asr_finetune.training.eval_steps import CTCEvalMixin, Seq2SeqEvalMixin
from asr_finetune.training.nonfinite import NonFiniteGuard, check_weights_finite
from asr_finetune.training.preemption import StopRequest, StopRequestCallback
from asr_finetune.training.redaction import secrets_removed
from asr_finetune.training.run_flags import write_run_flags
from asr_finetune.training.sharding import (
    full_state_dict,
    is_sharded,
    is_wrapped,
    load_fsdp_checkpoint_weights,
    prepare_for_sharding,
    shard_on_cpu,
    write_checkpoint_config,
)
from asr_finetune.training.throughput import ThroughputMeter

logger = logging.getLogger(__name__)


def wants_length_grouping(args: Any) -> bool:
    """True for ``--train_sampling_strategy group_by_length`` (5.x) or ``--group_by_length`` (4.x)."""
    return getattr(args, "train_sampling_strategy", None) == "group_by_length" or bool(
        getattr(args, "group_by_length", False)
    )


PRIVATE_TRAINER_HOOKS = ("_get_train_sampler", "_get_eval_sampler", "_prepare_inputs", "_save",
                         "_load_from_checkpoint", "get_batch_samples", "_save_optimizer_and_scheduler")
"""Trainer internals we override or call (checked against transformers 4.55 and 5.24): ``_get_train_sampler``
(length grouping by header durations), ``_get_eval_sampler`` (evaluation in dataset order), ``_prepare_inputs``
(throughput and clip ids out of the batch), ``_save`` (finite weights, no token in training_args.bin),
``_load_from_checkpoint`` (the weights of a finished run, :mod:`asr_finetune.tasks.finetuning`; FSDP checkpoints
into a model not sharded yet), ``get_batch_samples`` (loader wait), ``_save_optimizer_and_scheduler`` (the config
and run flags of a sharded FSDP checkpoint). tests/test_backends.py fails when transformers renames one of them."""


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
    - ``training_curves.png`` in the output dir, redrawn at each evaluation (:mod:`asr_finetune.training.curves`).
    """

    def __init__(
        self,
        *args: Any,
        batching: Any = None,
        on_nonfinite_loss: str = "stop",
        run_flags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.batching = batching
        self.run_flags = run_flags
        self.throughput = ThroughputMeter()
        self.nonfinite = NonFiniteGuard(on_nonfinite_loss)
        super().__init__(*args, **kwargs)
        if self.is_fsdp_enabled:
            prepare_for_sharding(self)
        self.static_compile = bool(batching is not None and batching.static_shapes and self.args.torch_compile)
        if self.static_compile:
            compile_per_shape(batching.num_duration_buckets or STATIC_BUCKETS)
        self.stop_request = StopRequest()
        self.add_callback(StopRequestCallback(self, self.stop_request))
        self.add_callback(_NonFiniteCallback(self))
        self.add_callback(_BestMetricCallback())
        self.add_callback(TrainingCurvesCallback())

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        shard_on_cpu(self)

    def get_train_dataloader(self) -> DataLoader:
        if hasattr(self.train_dataset, "loader"):  # a stream (asr_finetune.data.streaming): it makes its own batches
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
        inputs.pop(LONGEST_KEY, None)
        if stats[0] is not None and self.model.training:
            self.throughput.add_batch(float(stats[0]), float(stats[1]), int(skipped))
            self.nonfinite.add_batch(ids)
        inputs = super()._prepare_inputs(inputs)
        return mark_static(inputs) if self.static_compile else inputs

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(model, inputs, *args, **kwargs)
        self.nonfinite.add_loss(float(loss.detach()))
        return loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """With sharded FSDP checkpoints, the final model (not a checkpoint) is gathered into one plain model."""
        if is_sharded(self) and not _internal_call:
            self._save(output_dir, state_dict=full_state_dict(self.model) if is_wrapped(self.model) else None)
            return
        super().save_model(output_dir, _internal_call=_internal_call)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if is_sharded(self):  # no _save for a sharded checkpoint: its config and run flags are written here
            write_checkpoint_config(self, output_dir)
            if self.run_flags is not None and self.args.should_save:
                write_run_flags(output_dir, self.run_flags)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """An FSDP checkpoint's weights into a model not (yet) sharded: a finished run's evaluation and final
        model. Sharded training resumes through the Trainer's own FSDP loading."""
        if self.is_fsdp_enabled and model is None and not is_wrapped(self.model):
            if load_fsdp_checkpoint_weights(self.model, resume_from_checkpoint):
                return
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        """Every model save but a sharded FSDP checkpoint's (its parts are written with the optimizer state) passes
        here: refuse NaN/inf weights, and keep the Hub token out of training_args.bin (checked against transformers
        4.55 and 5.24). Under FSDP every process comes here; only the main one writes."""
        check_weights_finite(self.model, output_dir or self.args.output_dir)
        with secrets_removed(self.args):
            super()._save(output_dir, state_dict=state_dict)
        if not self.args.should_save:  # under FSDP every process comes here, to gather the weights
            return
        if self.run_flags is not None:  # before the checkpoint's trainer_state.json: part of a complete checkpoint
            write_run_flags(output_dir or self.args.output_dir, self.run_flags)
        give_default_mode(output_dir or self.args.output_dir)

    def save_metrics(self, split: str, metrics: dict[str, Any], combined: bool = True) -> None:
        """``<split>_results.json`` (and ``all_results.json``) written atomically: a full disk never leaves one
        empty or cut short (the stock method writes in place)."""
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        write_json(metrics, output_dir / f"{split}_results.json")
        if combined:
            try:
                everything = json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                everything = {}
            write_json(dict(sorted({**everything, **metrics}.items())), output_dir / "all_results.json")

    def get_batch_samples(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        batches = super().get_batch_samples(*args, **kwargs)
        self.throughput.add_wait(time.perf_counter() - started)
        return batches

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            window = self.throughput.window()
            if self.args.world_size > 1:
                speed = torch.tensor([window["audio_seconds_per_second"]], device=self.args.device)  # NCCL: on GPU
                summed = self.accelerator.reduce(speed, "sum")
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


class _BestMetricCallback(TrainerCallback):
    """Says when ``--metric_for_best_model`` is NaN/inf: such an evaluation can never be the best, and a run whose
    evaluations all were keeps no best checkpoint (the final model is then the last step's, not the best)."""

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:  # fmt: skip
        name = args.metric_for_best_model
        if not name or not metrics:
            return
        key = name if name.startswith("eval_") else f"eval_{name}"
        value = metrics.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            logger.warning("--metric_for_best_model %s is %s at step %d: this evaluation cannot be the best one.",
                           name, value, state.global_step)  # fmt: skip

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if args.metric_for_best_model and args.load_best_model_at_end and state.best_model_checkpoint is None:
            logger.warning("--metric_for_best_model %s was never a finite number: no best checkpoint was kept, the "
                           "final model is the last step's.", args.metric_for_best_model)  # fmt: skip


class SpeechTrainer(CTCEvalMixin, SpeechSamplingMixin, Trainer):
    """Trainer for CTC models."""


class SpeechSeq2SeqTrainer(Seq2SeqEvalMixin, JointCTCMixin, SpeechSamplingMixin, Seq2SeqTrainer):
    """Trainer for encoder-decoder models (generation in evaluation, optional joint CTC loss)."""
