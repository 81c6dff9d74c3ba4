"""Sharded data parallel training (``--fsdp``): on CPU processes as well as accelerators, with sharded checkpoints
and a consolidated final model, and its start-up checks.

Accelerate turns ``--fsdp`` into FSDP only on accelerator back-ends; on CPU processes (gloo) it dropped the plugin
and trained plain DDP, so every process silently held the whole model and optimizer. FSDP2 (``fully_shard``) runs
on gloo, so the Trainer's accelerator is switched to it there, and the Trainer's own FSDP paths (sharded optimizer,
sharded checkpoints) then run unchanged. Checkpoints are sharded by default (``pytorch_model_fsdp_0/``,
``optimizer_0/``: each process writes its own part, nothing is gathered); the final model is gathered once into a
plain ``model.safetensors``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from asr_finetune.errors import UsageError
from asr_finetune.models.loading import SHARDED_WEIGHTS

logger = logging.getLogger(__name__)

FULL_WEIGHTS = "pytorch_model_fsdp.bin"  # fsdp_config state_dict_type FULL_STATE_DICT
CHECKPOINT_METADATA = ".metadata"  # torch.distributed.checkpoint writes it last, once every process has written


CPU_FSDP_ACCELERATE = "1.16"
"""The accelerate release FSDP on CPU processes is tested with (1.10.1, the Gaudi stack's, cannot build its FSDP
plugin without a GPU or HPU)."""


def on_cpu_processes(training_args: Any) -> bool:
    """True when the processes train on CPU (no CUDA, no Gaudi): where Accelerate drops FSDP and DeepSpeed."""
    return not torch.cuda.is_available() and not getattr(training_args, "use_habana", False)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a tensor: its shard when FSDP2 sharded it (a DTensor), else the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def fsdp_unsupported(training_args: Any) -> str | None:
    """Why this stack cannot run ``--fsdp`` as this module drives it, or None."""
    import accelerate
    import transformers
    from packaging.version import Version

    if not hasattr(training_args, "fsdp_plugin_args"):  # transformers 4.x hands FSDP to Accelerate through env vars
        return (f"--fsdp needs transformers >= 5 (installed: {transformers.__version__}, the Gaudi stack's pin, "
                "whose FSDP path this project does not drive)")  # fmt: skip
    if on_cpu_processes(training_args) and Version(accelerate.__version__) < Version(CPU_FSDP_ACCELERATE):
        return (f"--fsdp on CPU processes needs accelerate >= {CPU_FSDP_ACCELERATE} (installed: "
                f"{accelerate.__version__}, which cannot build FSDP without a GPU or HPU)")  # fmt: skip
    return None


def check_sharding(training_args: Any) -> None:
    """Refuse at start what cannot shard, and make checkpoints sharded unless ``--fsdp_config`` says otherwise."""
    if getattr(training_args, "deepspeed", None) and on_cpu_processes(training_args):
        raise UsageError(
            "--deepspeed on CPU processes: Accelerate leaves DeepSpeed out there, and the run would train plain DDP, "
            "unsharded. On CPU use --fsdp \"full_shard auto_wrap\"; DeepSpeed ZeRO runs on GPUs (and on Gaudi with "
            "gaudi_spawn.py --use_deepspeed)."
        )
    if not getattr(training_args, "fsdp", None):
        return
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        raise UsageError(
            "--fsdp shards the model across processes, and this run has one: launch it with torchrun "
            "--nproc_per_node N (N >= 2, one per GPU, or CPU processes), or leave --fsdp out."
        )
    if getattr(training_args, "deepspeed", None):
        raise UsageError("--fsdp and --deepspeed both shard the model: give one of them.")
    problem = fsdp_unsupported(training_args)
    if problem:
        raise UsageError(f"{problem}. pip install -U transformers accelerate, or leave --fsdp out.")
    plugin_args = training_args.fsdp_plugin_args
    if plugin_args.get("fsdp_version", 2) != 2:
        raise UsageError("--fsdp_config version 1 (FSDP1, deprecated by transformers): this project runs FSDP2; "
                         "leave version out (2 is the default) or set it to 2.")  # fmt: skip
    if getattr(training_args, "torch_compile", False):
        raise UsageError("--fsdp with --torch_compile is not supported yet: leave one out.")
    if training_args.fsdp_config.get("activation_checkpointing") and training_args.gradient_checkpointing:
        raise UsageError("--fsdp_config activation_checkpointing and --gradient_checkpointing both checkpoint "
                         "activations: give one of them.")  # fmt: skip
    if "state_dict_type" not in training_args.fsdp_config:
        training_args.fsdp_config["state_dict_type"] = "SHARDED_STATE_DICT"
        plugin_args["state_dict_type"] = "SHARDED_STATE_DICT"
    if getattr(training_args, "save_only_model", False) and "SHARDED" in plugin_args["state_dict_type"]:
        raise UsageError("--save_only_model with --fsdp: a sharded checkpoint's weights are saved with the optimizer "
                         "state, so its checkpoints would hold no weights. Leave --save_only_model out, or give "
                         "--fsdp_config '{\"state_dict_type\": \"FULL_STATE_DICT\"}'.")  # fmt: skip


def check_resume_sharding(checkpoint: str | Path | None, training_args: Any) -> None:
    """Refuse to resume (or rerun) a checkpoint with the other choice of ``--fsdp``: a sharded checkpoint's parts are
    read only by a sharded run, and a sharded run reads nothing else."""
    if not checkpoint:
        return
    sharded = (Path(checkpoint) / SHARDED_WEIGHTS).is_dir()
    fsdp = bool(getattr(training_args, "fsdp", None))
    if sharded and not fsdp:
        raise UsageError(f"{checkpoint} was written by a --fsdp run (its weights are in one part per process): "
                         "give the same --fsdp to resume or rerun it, or --resume_from_checkpoint false to start "
                         "fresh.")  # fmt: skip
    if fsdp and not sharded and not has_fsdp_weights(Path(checkpoint)):
        raise UsageError(f"{checkpoint} was written without --fsdp: resume it without --fsdp, or pass "
                         "--resume_from_checkpoint false to start fresh with it.")  # fmt: skip


def shard_on_cpu(trainer: Any) -> None:
    """After the Trainer made its accelerator: give CPU processes the FSDP plugin Accelerate left out."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin_args = getattr(trainer.args, "fsdp_plugin_args", None)
    state = trainer.accelerator.state
    if not plugin_args or getattr(state, "fsdp_plugin", None) is not None:
        return
    if state.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin = FullyShardedDataParallelPlugin(**plugin_args)
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # AcceleratorState() re-reads it from here
    state.fsdp_plugin = plugin
    trainer.is_fsdp_enabled = True


def prepare_for_sharding(trainer: Any) -> None:
    """Before FSDP wraps the model: one FSDP unit per encoder/decoder layer, and the speech models' gaps in
    Accelerate's FSDP2 wrapping closed."""
    model = trainer.model
    plugin = trainer.accelerator.state.fsdp_plugin
    if not getattr(plugin, "transformer_cls_names_to_wrap", None) and not getattr(model, "_no_split_modules", None):
        plugin.transformer_cls_names_to_wrap = layer_class_names(model)
    # wav2vec2 and kin have no input embeddings; Accelerate asks for them and would get NotImplementedError.
    try:
        model.get_input_embeddings()
    except NotImplementedError:
        model.get_input_embeddings = lambda: None
    _guard_final_norm_lookup()
    logger.info(
        "FSDP%d on %d processes: each holds 1/%d of the parameters, gradients and optimizer state; one unit per %s; "
        "checkpoints %s.", plugin.fsdp_version, trainer.accelerator.num_processes, trainer.accelerator.num_processes,
        ", ".join(plugin.transformer_cls_names_to_wrap or getattr(model, "_no_split_modules", None) or ["model"]),
        "sharded (one part per process)" if is_sharded(trainer) else "gathered whole (FULL_STATE_DICT)",
    )  # fmt: skip


def layer_class_names(model: Any) -> list[str]:
    """The classes of the model's repeated blocks (every ``layers`` list: encoder and decoder layers), which
    wav2vec2-family models do not declare (``_no_split_modules``): without them FSDP makes the whole model one
    unit, gathered whole on every process, so nothing is saved."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name.split(".")[-1] == "layers" and isinstance(module, torch.nn.ModuleList):
            names.extend(type(layer).__name__ for layer in module if type(layer).__name__ not in names)
    return names


def _guard_final_norm_lookup() -> None:
    """Accelerate >= 1.11 gives the base model's last child whose class name holds "Norm" an FSDP unit of its own,
    taking it for a final layer norm; in wav2vec2 models with ``do_stable_layer_norm`` (large, XLS-R) that child is
    ``Wav2Vec2EncoderStableLayerNorm``, the whole encoder, whose in-place masking of its input then fails under
    FSDP2 ("Output 0 of RegisterPostBackwardFunction is a view and is being modified inplace"). Only a module with
    no children is taken for a norm here."""
    from accelerate.utils import fsdp_utils

    find = getattr(fsdp_utils, "_find_final_norm", None)
    if find is None or getattr(find, "norm_layers_only", False):
        return

    def find_norm_layer(model: torch.nn.Module) -> torch.nn.Module | None:
        norm = find(model)
        return norm if norm is not None and next(norm.children(), None) is None else None

    find_norm_layer.norm_layers_only = True  # type: ignore[attr-defined]
    fsdp_utils._find_final_norm = find_norm_layer


def is_sharded(trainer: Any) -> bool:
    """True when the trainer's checkpoints hold sharded weights (FSDP with SHARDED_STATE_DICT)."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None) if trainer.is_fsdp_enabled else None
    return plugin is not None and "SHARDED_STATE_DICT" in str(plugin.state_dict_type)


def is_wrapped(model: Any) -> bool:
    """True once FSDP2 has sharded the model (its parameters are DTensors)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(getattr(model, "_orig_mod", model), FSDPModule)


def full_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The whole model's weights on the main process, gathered from every process (a collective: all call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    # Tied weights (Whisper's output projection and token embeddings) come back as separate copies; sharing them
    # again lets save_pretrained store them once, as it does for an unsharded model.
    first_name: dict[int, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        first = first_name.setdefault(id(parameter), name)
        if first != name and first in state and name in state:
            state[name] = state[first]
    return state


def sharded_weights_problem(checkpoint: Path) -> str | None:
    """Why the FSDP weights of a checkpoint folder cannot be resumed, or None (also None when it has none)."""
    sharded = checkpoint / SHARDED_WEIGHTS
    if sharded.is_dir() and not (sharded / CHECKPOINT_METADATA).is_file():
        return f"{SHARDED_WEIGHTS}/ has no {CHECKPOINT_METADATA} (cut off while saving)"
    optimizer = checkpoint / "optimizer_0"
    if optimizer.is_dir() and not (optimizer / CHECKPOINT_METADATA).is_file():
        return f"optimizer_0/ has no {CHECKPOINT_METADATA} (cut off while saving)"
    return None


def has_fsdp_weights(checkpoint: Path) -> bool:
    return (checkpoint / SHARDED_WEIGHTS / CHECKPOINT_METADATA).is_file() or (checkpoint / FULL_WEIGHTS).is_file()


def load_fsdp_checkpoint_weights(model: torch.nn.Module, checkpoint: str | Path) -> bool:
    """Load an FSDP checkpoint's weights (sharded or gathered) into a model FSDP has not wrapped; True when the
    checkpoint had FSDP weights. Used where no training follows (a finished run's evaluation and final model)."""
    checkpoint = Path(checkpoint)
    if (checkpoint / SHARDED_WEIGHTS / CHECKPOINT_METADATA).is_file():
        import torch.distributed.checkpoint as dcp

        # Read in place into the model's own tensors, in this process alone: Accelerate saved them under "model".
        dcp.load({"model": model.state_dict()}, checkpoint_id=str(checkpoint / SHARDED_WEIGHTS), no_dist=True)
        return True
    if (checkpoint / FULL_WEIGHTS).is_file():
        state = torch.load(checkpoint / FULL_WEIGHTS, map_location="cpu", weights_only=True)
    else:
        return False
    state = state.get("model", state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UsageError(f"{checkpoint} does not hold this model's weights (missing: {missing[:3]}, unexpected: "
                         f"{unexpected[:3]}). Pass --resume_from_checkpoint false to start fresh.")  # fmt: skip
    return True


def write_checkpoint_config(trainer: Any, output_dir: str | Path) -> None:
    """A sharded checkpoint holds no model files; its ``config.json`` still says what model the shards are of."""
    if trainer.args.should_save:
        config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
        if config is not None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            config.save_pretrained(output_dir)

