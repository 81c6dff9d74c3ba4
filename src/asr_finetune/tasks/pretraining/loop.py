"""The Accelerate loop of wav2vec2 pretraining: steps, logging, validation, resumable checkpoints, final model.

One optimizer step takes ``gradient_accumulation_steps`` micro-batches, all fetched first so the masked frames of
the whole step (on every process) are known before the first backward pass; the loss is the mean per masked frame.
Checkpoints are ``output_dir/checkpoint-N`` folders, written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.tracking import get_available_trackers
from accelerate.utils import send_to_device
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler
from tqdm.auto import tqdm
from transformers import get_scheduler

from asr_finetune.data.collators import IDS_KEY, LONGEST_KEY, SKIPPED_KEY, STAT_KEYS, static_collator
from asr_finetune.files import write_json
from asr_finetune.models.feature_encoder import speed_up_feature_encoders
from asr_finetune.tasks.pretraining.checkpoints import LoopState, read_checkpoint, write_checkpoint
from asr_finetune.tasks.pretraining.health import HealthMonitor, StepTotals
from asr_finetune.tasks.pretraining.log import PretrainingLog
from asr_finetune.tasks.pretraining.masks import gumbel_temperature, loss_multiplier
from asr_finetune.tasks.pretraining.model import decay_parameter_groups
from asr_finetune.training.checkpoints import safetensors_complete
from asr_finetune.training.launch import prepare_launch_environment, set_cpu_threads
from asr_finetune.training.memory import peak_memory
from asr_finetune.training.nonfinite import NonFiniteGuard, check_weights_finite
from asr_finetune.training.outputs import PARTIAL_DIR, publish_files
from asr_finetune.training.preemption import StopRequest, stop_requests
from asr_finetune.training.throughput import ThroughputMeter

logger = logging.getLogger(__name__)

RESULTS_FILE = "all_results.json"
TRACKERS = ("tensorboard", "wandb")


def make_accelerator(args: Any, find_unused_parameters: bool = False) -> Accelerator:
    """An Accelerator that sees a multi-process CPU launch (torchrun, accelerate launch --multi_gpu) as one run.

    ``find_unused_parameters``: needed by data-parallel training when layers may be skipped (layerdrop > 0).
    """
    prepare_launch_environment()
    set_cpu_threads(args.dataloader_num_workers)
    wanted = [name for name in (args.report_to or []) if name != "none"]
    if "all" in wanted:
        wanted = list(TRACKERS)
    available = {str(getattr(tracker, "value", tracker)) for tracker in get_available_trackers()}
    trackers = [name for name in wanted if name in available]
    for name in sorted(set(wanted) - set(trackers)):
        logger.warning("--report_to %s: %s is not installed; not reporting to it.", name, name)
    return Accelerator(
        cpu=args.use_cpu,
        mixed_precision=args.mixed_precision,
        log_with=trackers or None,
        project_dir=args.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """Fixed masks for validation without disturbing the training random stream."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


class Pretrainer:
    """Runs pretraining for ``args`` (a :class:`~asr_finetune.args.PretrainingArguments`)."""

    def __init__(
        self,
        args: Any,
        accelerator: Accelerator,
        model: Any,
        feature_extractor: Any,
        collator: Any,
        train_dataset: Any,
        eval_dataset: Any | None = None,
        batching: Any | None = None,
    ) -> None:
        self.args = args
        self.accelerator = accelerator
        self.feature_extractor = feature_extractor
        self.collator = collator
        if batching is not None and batching.static_shapes:
            # the static lengths depend on the durations alone, not on the epoch: one sampler tells them
            durations = train_dataset.durations
            self.collator = static_collator(collator, batching.sampler(durations, args.per_device_train_batch_size,
                                                                       seed=args.seed))
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.batching = batching
        self.output_dir = Path(args.output_dir)
        self.world_size = accelerator.num_processes
        config = model.config
        groups = config.num_codevector_groups
        self.health = HealthMonitor(groups, groups * config.num_codevectors_per_group)
        self.throughput = ThroughputMeter()
        self.nonfinite = NonFiniteGuard(args.on_nonfinite_loss)
        optimizer = torch.optim.AdamW(
            decay_parameter_groups(model, args.weight_decay),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
        )
        self.steps_per_epoch = max(1, math.ceil(len(self._epoch_batches(0)) / args.gradient_accumulation_steps))
        self.max_steps = args.max_train_steps or args.num_train_epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.max_steps / self.steps_per_epoch)
        # Not prepared by Accelerate, which would step it once per process per step: stepped here once per update.
        self.scheduler = get_scheduler(
            args.lr_scheduler_type, optimizer, num_warmup_steps=args.num_warmup_steps, num_training_steps=self.max_steps
        )
        speed_up_feature_encoders(model, accelerator.device.type)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.state = LoopState(gumbel_temperature=args.max_gumbel_temperature, world_size=self.world_size)
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.log = PretrainingLog(accelerator, self.output_dir, self.max_steps)

    # ------------------------------------------------------------------------------------------ data

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches (dataset indices) for ``epoch``: a fixed function of seed and epoch."""
        accelerator, args = self.accelerator, self.args
        if self.batching is not None and self.batching.enabled:
            sampler = self.batching.sampler(
                self.train_dataset.durations,
                args.per_device_train_batch_size,
                seed=args.seed,
                num_replicas=accelerator.num_processes,
                rank=accelerator.process_index,
            )
            sampler.set_epoch(epoch)
            return list(sampler)
        shuffled = DistributedSampler(
            range(len(self.train_dataset)),
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            shuffle=True,
            seed=args.seed,
        )
        shuffled.set_epoch(epoch)
        return list(BatchSampler(shuffled, args.per_device_train_batch_size, drop_last=False))

    def _loader(self, dataset: Any, batches: list[list[int]], seed: int, workers: int) -> DataLoader:
        # An own generator keeps the global torch random stream (Gumbel noise, dropout) the same on resume.
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.collator,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed),
        )

    # ------------------------------------------------------------------------------------------ training

    def train(self, resume_from: str | None = None) -> dict[str, Any]:
        """Train to ``max_steps`` (resuming from a checkpoint dir if given); returns the final figures."""
        args, accelerator = self.args, self.accelerator
        if resume_from:
            self.state = read_checkpoint(accelerator, Path(resume_from), model=self.model, optimizer=self.optimizer,
                                         scheduler=self.scheduler)
            if self.state.global_step >= self.max_steps and self._final_model_published():
                return self._complete_results(resume_from)
        self.log.start(self.state.global_step, args)
        per_batch = f"{args.per_device_train_batch_size} clips"
        if self.batching is not None and self.batching.max_batch_duration is not None:
            per_batch = f"<= {self.batching.max_batch_duration:g} s of padded audio"
        logger.info(
            "Pretraining: world size %d, %d training clips, %d steps of %d process(es) x %d micro-batch(es) x %s, "
            "%d step(s) per epoch, %d epoch(s); starting at step %d.",
            self.world_size, len(self.train_dataset), self.max_steps, accelerator.num_processes,
            args.gradient_accumulation_steps, per_batch, self.steps_per_epoch, self.num_epochs, self.state.global_step,
        )
        started = time.perf_counter()
        progress = tqdm(
            total=self.max_steps, initial=self.state.global_step,
            disable=args.disable_tqdm or not accelerator.is_local_main_process, desc="pretraining",
        )
        window = StepTotals()
        last_saved = self.state.global_step if resume_from else -1
        self.model.train()
        with stop_requests() as request:
            last_saved = self._train_loop(progress, window, last_saved, request)
        progress.close()
        request.raise_if_stopped(self.output_dir)
        if not self.last_eval:  # nothing left to train (a rerun of a finished command): validate once
            self.last_eval = self.evaluate()
        if last_saved != self.state.global_step:
            self.save_checkpoint()
        self.save_model()
        results = {
            "global_step": self.state.global_step,
            "world_size": self.world_size,
            "gumbel_temperature": self.state.gumbel_temperature,
            "train_runtime": round(time.perf_counter() - started, 2),
            "train_nonfinite_steps_skipped": self.nonfinite.skipped_steps,
            **{f"train_{key}": value for key, value in self.throughput.totals().items()},
            **{f"train_{key}": value for key, value in self.last_train.items()},
            **{f"train_{key}": value for key, value in peak_memory().items()},
            **self.last_eval,
        }
        if accelerator.is_main_process:
            write_json(results, self.output_dir / RESULTS_FILE)
        accelerator.end_training()
        return results

    def _train_loop(self, progress: Any, window: StepTotals, last_saved: int, request: StopRequest) -> int:
        """The epochs and steps up to ``max_steps``, or up to the step a stop request arrives in (then saved as a
        complete checkpoint); returns the last step saved."""
        args = self.args
        while self.state.global_step < self.max_steps and self.state.epoch < self.num_epochs:
            epoch = self.state.epoch
            batches = self._epoch_batches(epoch)
            groups = [batches[i : i + args.gradient_accumulation_steps]
                      for i in range(0, len(batches), args.gradient_accumulation_steps)]
            remaining = [batch for group in groups[self.state.step_in_epoch :] for batch in group]
            loader = iter(self._loader(self.train_dataset, remaining, args.seed + epoch, args.dataloader_num_workers))
            for group in groups[self.state.step_in_epoch :]:
                if self.state.global_step >= self.max_steps:
                    break
                wait = time.perf_counter()
                micro_batches = [next(loader) for _ in group]
                self.throughput.add_wait(time.perf_counter() - wait)
                step_totals = self._train_step(micro_batches)
                window = _add(window, step_totals)
                self.state.global_step += 1
                self.state.step_in_epoch += 1
                progress.update(1)
                if self.state.global_step % args.logging_steps == 0 or self.state.global_step == self.max_steps:
                    self._log_training(window, progress)
                    window = StepTotals()
                stop = request.agreed(self.accelerator, self.accelerator.num_processes, self.accelerator.device)
                if self.state.global_step % args.saving_steps == 0 or stop:
                    self.save_checkpoint()
                    last_saved = self.state.global_step
                if stop:
                    request.stopped_at = self.state.global_step
                    return last_saved
            self.last_eval = self.evaluate()
            if self.state.step_in_epoch >= len(groups):
                self.state.epoch += 1
                self.state.step_in_epoch = 0
        return last_saved

    def _train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> StepTotals:
        """One optimizer step over ``micro_batches``; the loss is the mean over masked frames of all processes."""
        accelerator, args = self.accelerator, self.args
        temperature = gumbel_temperature(
            self.state.global_step, args.max_gumbel_temperature, args.min_gumbel_temperature,
            args.gumbel_temperature_decay,
        )
        accelerator.unwrap_model(self.model).set_gumbel_temperature(temperature)
        self.state.gumbel_temperature = temperature
        self.nonfinite.start_step()
        local_masked = sum(float(batch["mask_time_indices"].sum()) for batch in micro_batches)
        total_masked = accelerator.reduce(torch.tensor([local_masked], device=accelerator.device), "sum")
        multiplier = loss_multiplier(float(total_masked[0]), accelerator.num_processes)
        totals = StepTotals()
        for index, batch in enumerate(micro_batches):
            figures = self._forward(self.model, batch, totals)
            last = index == len(micro_batches) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(self.model):
                accelerator.backward(figures.loss * multiplier)
        grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm or math.inf)
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
        self.nonfinite.add_loss(totals.loss)
        if self.nonfinite.check(self.model.parameters(), self.state.global_step + 1):
            self.optimizer.step()
        if not accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals.grad_norm, totals.optimizer_steps = grad_norm, 1.0
        if accelerator.is_main_process:
            perplexity = totals.perplexity / max(totals.micro_batches, 1.0)
            for message in self.health.check(self.state.global_step + 1, grad_norm, perplexity):
                logger.warning(message)
        return totals

    def _forward(self, model: Any, batch: dict[str, torch.Tensor], totals: StepTotals) -> Any:
        """Run ``model`` on one batch, adding its summed losses and frame counts to ``totals``."""
        audio, padded = (float(batch.pop(key)) for key in STAT_KEYS)
        ids, skipped = batch.pop(IDS_KEY, None), int(batch.pop(SKIPPED_KEY, 0))
        batch.pop(LONGEST_KEY, None)
        if model.training:
            self.throughput.add_batch(audio, padded, skipped)
            self.nonfinite.add_batch(ids)
        frames = batch.pop("sub_attention_mask")
        batch = send_to_device(batch, self.accelerator.device)
        outputs = model(**batch)
        values = torch.stack(
            [outputs.loss, outputs.contrastive_loss, outputs.diversity_loss, outputs.codevector_perplexity]
        ).detach().float().tolist()
        totals.loss += values[0]
        totals.contrastive_loss += values[1]
        totals.diversity_loss += values[2]
        totals.perplexity += values[3]
        totals.micro_batches += 1
        totals.masked_frames += float(batch["mask_time_indices"].sum())
        totals.frames += float(frames.sum())
        totals.audio_seconds += audio
        return outputs

    def _reduce(self, totals: StepTotals) -> StepTotals:
        summed = self.accelerator.reduce(totals.as_tensor().to(self.accelerator.device), "sum")
        return StepTotals.from_tensor(summed.cpu())

    def _log_training(self, window: StepTotals, progress: Any) -> None:
        totals = self._reduce(window)
        speed = self.throughput.window()
        shared = self.accelerator.reduce(
            torch.tensor([speed["audio_seconds_per_second"], speed["padding_fraction"], speed["loader_wait_share"]],
                         dtype=torch.float64, device=self.accelerator.device),
            "sum",
        ).tolist()
        metrics = totals.metrics()
        metrics.update(
            lr=self.scheduler.get_last_lr()[0],
            gumbel_temperature=self.state.gumbel_temperature,
            audio_seconds_per_second=round(shared[0], 3),
            padding_fraction=round(shared[1] / self.world_size, 4),
            loader_wait_share=round(shared[2] / self.world_size, 4),
        )
        self.last_train = metrics
        self.log.emit({"step": self.state.global_step, "epoch": self._epoch_position(), **metrics})
        if self.accelerator.is_local_main_process:
            progress.set_postfix(loss=f"{metrics['loss']:.3f}", ppl=f"{metrics['perplexity']:.1f}")

    def _epoch_position(self) -> float:
        return round(self.state.epoch + self.state.step_in_epoch / self.steps_per_epoch, 4)

    # ------------------------------------------------------------------------------------------ validation

    def evaluate(self) -> dict[str, float]:
        """Validation loss, contrastive/diversity loss and perplexity, with fixed masks and hard code choices."""
        if self.eval_dataset is None or len(self.eval_dataset) == 0:
            return {}
        accelerator, args = self.accelerator, self.args
        indices = list(range(accelerator.process_index, len(self.eval_dataset), accelerator.num_processes))
        batches = [indices[i : i + args.per_device_eval_batch_size]
                   for i in range(0, len(indices), args.per_device_eval_batch_size)]
        model = accelerator.unwrap_model(self.model)
        model.eval()
        totals = StepTotals()
        with numpy_seed(args.seed + accelerator.process_index), torch.no_grad():
            for batch in self._loader(self.eval_dataset, batches, args.seed, 0):
                self._forward(model, batch, totals)
        model.train()
        metrics = self._reduce(totals).metrics(prefix="eval_")
        self.log.emit({"step": self.state.global_step, "epoch": self._epoch_position(), **metrics})
        return metrics

    # ------------------------------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        """``checkpoint-N`` (see :mod:`asr_finetune.tasks.pretraining.checkpoints`: no pickle), holding the temperature
        the next step starts from."""
        args, step = self.args, self.state.global_step
        temperature = gumbel_temperature(step, args.max_gumbel_temperature, args.min_gumbel_temperature,
                                         args.gumbel_temperature_decay)
        return write_checkpoint(
            self.accelerator, self.output_dir, dataclasses.replace(self.state, gumbel_temperature=temperature),
            model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            save_total_limit=args.save_total_limit,
        )

    # ------------------------------------------------------------------------------------------ final model

    def _final_model_published(self) -> bool:
        """True when output_dir holds the final model of the step reached (the last thing a run writes)."""
        try:
            results = json.loads((self.output_dir / RESULTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (
            results.get("global_step") == self.state.global_step
            and safetensors_complete(self.output_dir / "model.safetensors")
            and not (self.output_dir / PARTIAL_DIR).exists()
        )

    def _complete_results(self, checkpoint: str) -> dict[str, Any]:
        logger.warning(
            "Pretraining is already complete: %s is step %d of %d. The model in %s is left as it is. To train "
            "again pass --resume_from_checkpoint false; to go on, a larger --max_train_steps.",
            checkpoint, self.state.global_step, self.max_steps, self.output_dir,
        )
        self.accelerator.end_training()
        return json.loads((self.output_dir / RESULTS_FILE).read_text(encoding="utf-8"))

    def save_model(self) -> None:
        """Model + feature extractor in output_dir, through a staging folder: a ``--model_name_or_path`` for CTC."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        check_weights_finite(accelerator.unwrap_model(self.model), str(self.output_dir))
        if accelerator.is_main_process:
            staging = self.output_dir / PARTIAL_DIR
            shutil.rmtree(staging, ignore_errors=True)
            accelerator.unwrap_model(self.model).save_pretrained(staging)
            self.feature_extractor.save_pretrained(staging)
            publish_files(staging, self.output_dir)
            logger.info("Saved the pretrained model and feature extractor to %s", self.output_dir)
        accelerator.wait_for_everyone()


def _add(a: StepTotals, b: StepTotals) -> StepTotals:
    return StepTotals.from_tensor(a.as_tensor() + b.as_tensor())
