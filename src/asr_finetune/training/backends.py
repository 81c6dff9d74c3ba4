"""Which Trainer and TrainingArguments classes a run uses (stock or Gaudi), checked before any work, and the
settings that depend on the device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Seq2SeqTrainingArguments, TrainingArguments

from asr_finetune.args import CommandLine
from asr_finetune.errors import UsageError
from asr_finetune.training.gaudi import gaudi_classes
from asr_finetune.training.trainers import SpeechSeq2SeqTrainer, SpeechTrainer


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


def training_arguments_class(seq2seq: bool = False) -> type:
    return Seq2SeqTrainingArguments if seq2seq else TrainingArguments


def trainer_class(seq2seq: bool = False) -> type:
    return SpeechSeq2SeqTrainer if seq2seq else SpeechTrainer


GAUDI_HELP = {
    "use_habana": "Train on Gaudi HPUs with optimum-habana's GaudiTrainer (pip install 'asr-finetune[hpu]').",
    "use_lazy_mode": "Gaudi lazy mode (graph accumulation), as optimum-habana's examples run.",
    "gaudi_config_name": "A GaudiConfig (Hub id or path): fused optimizer, clipping and mixed-precision settings.",
    "throughput_warmup_steps": "Steps left out of the reported throughput (graph compilation).",
    "use_hpu_graphs": "Record HPU graphs for training and inference.",
    "use_hpu_graphs_for_training": "Record HPU graphs for the training step.",
    "use_hpu_graphs_for_inference": "Record HPU graphs for evaluation.",
    "sdp_on_bf16": "Allow scaled-dot-product attention in bf16.",
    "distribution_strategy": "ddp (default) or fast_ddp.",
    "non_blocking_data_copy": "Copy batches to the HPU asynchronously.",
    "pipelining_fwd_bwd": "Overlap the forward of one micro-batch with the backward of the previous.",
    "adjust_throughput": "Leave logging and evaluation time out of the reported throughput.",
    "ignore_eos": "Generate to the length limit, ignoring end-of-sequence (benchmarking).",
}
"""Flags of optimum-habana's GaudiTrainingArguments; without --use_habana they are listed in --help and refused."""
GAUDI_FLAGS = tuple(GAUDI_HELP)
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
        arguments_class, trainer = gaudi_classes(seq2seq)
    except Exception as err:  # ImportError, or (optimum-habana 1.21 without SynapseAI) an IndexError reading hl-smi
        raise BackendError(f"{HABANA_HINT} ({err})") from err
    return Backend("habana", arguments_class, trainer)
