"""LoRA adapters (peft) for both fine-tuning scripts, injected into the model in place.

The model keeps its class (``WhisperForConditionalGeneration``, ``Wav2Vec2ForCTC``), so generation, evaluation and
checkpoints work as in a full fine-tune; only the LoRA matrices (and, for CTC, the new head) train. Checkpoints hold
the whole state, so a resumed run continues exactly. The final model is merged (:func:`merge_lora`): a plain
transformers model that loads without peft; the adapter alone is kept beside it (:func:`save_adapter`,
``output_dir/adapter/``), in the format ``peft.PeftModel.from_pretrained`` loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from asr_finetune.errors import UsageError, require_module

logger = logging.getLogger(__name__)

PEFT_HINT = "pip install 'asr-finetune[peft]'"
ADAPTER_DIR = "adapter"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
"""The attention projections of Whisper's encoder and decoder and of wav2vec2-family encoders."""


@dataclass
class AdapterArguments:
    """LoRA adapters instead of a full fine-tune; shared by both fine-tuning scripts."""

    _argument_group_name = "Adapters (LoRA, with peft)"

    use_peft: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters instead of every weight; the output dir gets the merged model (loads "
                  f"without peft) and the adapter alone in {ADAPTER_DIR}/. Needs {PEFT_HINT}."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": f"Module names (suffixes) that get adapters. Default: {' '.join(DEFAULT_TARGETS)} (the "
                  "attention projections of Whisper and wav2vec2-family encoders)."},
    )

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise UsageError(f"--lora_r {self.lora_r}: give 1 or more.")
        if not 0 <= self.lora_dropout < 1:
            raise UsageError(f"--lora_dropout {self.lora_dropout}: give a value in [0, 1).")

    def check(self, training_args: Any, streaming: bool = False) -> None:
        """Refuse at start what does not work with adapters."""
        if not self.use_peft:
            return
        require_peft()
        if getattr(training_args, "torch_compile", False):
            raise UsageError("--use_peft with --torch_compile is not supported yet: leave one out.")
        if getattr(training_args, "gradient_checkpointing", False) and not training_args.gradient_checkpointing_kwargs:
            # transformers 4.x checkpoints reentrantly by default: frozen inputs would give the adapters no gradient
            training_args.gradient_checkpointing_kwargs = {"use_reentrant": False}
        if getattr(training_args, "fsdp", None) or getattr(training_args, "deepspeed", None):
            raise UsageError("--use_peft with --fsdp or --deepspeed is not supported yet: adapters already fit "
                             "where the model does; leave one out.")


def require_peft() -> Any:
    return require_module("peft", "--use_peft", PEFT_HINT)


def add_lora(model: torch.nn.Module, args: AdapterArguments, trained_in_full: tuple[str, ...] = ()) -> torch.nn.Module:
    """Inject LoRA into ``args.lora_target_modules`` (checked against the model's linear layers) and train only the
    adapters and the modules named in ``trained_in_full`` (e.g. a new CTC head)."""
    peft = require_peft()
    targets = list(args.lora_target_modules or DEFAULT_TARGETS)
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    missing = [target for target in targets if target not in linear]
    if missing:
        raise UsageError(f"--lora_target_modules {' '.join(missing)}: {type(model).__name__} has no linear layer of "
                         f"that name. Its linear layers: {' '.join(sorted(linear))}.")  # fmt: skip
    config = peft.LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                             target_modules=targets, bias="none")  # fmt: skip
    model = peft.inject_adapter_in_model(config, model)
    model._asr_lora_config = config
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name or any(f"{part}." in f"{name}." for part in trained_in_full))
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("LoRA r=%d alpha=%d on %s: %.2fM of %.1fM weights train (%.2f%%)%s.", args.lora_r, args.lora_alpha,
                " ".join(targets), trained / 1e6, total / 1e6, 100 * trained / total,
                f", {' '.join(trained_in_full)} in full" if trained_in_full else "")  # fmt: skip
    return model


def lora_layers(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """The (name, layer) of every LoRA layer in the model; empty for a model without adapters."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def save_adapter(model: torch.nn.Module, directory: str | Path) -> None:
    """The adapter alone (``adapter_model.safetensors`` + ``adapter_config.json``), loadable with
    ``peft.PeftModel.from_pretrained(base_model, directory)``; trained non-LoRA modules (a CTC head) included."""
    peft = require_peft()
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model._asr_lora_config
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    state = peft.get_peft_model_state_dict(model)
    state.update({name: parameter.detach() for name, parameter in model.named_parameters()
                  if name in trained and "lora_" not in name})  # fmt: skip
    save_file({f"base_model.model.{name}": tensor.contiguous().cpu() for name, tensor in state.items()},
              str(directory / "adapter_model.safetensors"))  # fmt: skip
    config.modules_to_save = sorted({name.rsplit(".", 1)[0] for name in trained if "lora_" not in name}) or None
    config.save_pretrained(str(directory))


def merge_lora(model: torch.nn.Module) -> int:
    """Fold every LoRA update into its base weight and put the plain layer back (in place); returns how many."""
    layers = lora_layers(model)
    for name, layer in layers:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if layers:
        model.__dict__.pop("_asr_lora_config", None)
    return len(layers)
