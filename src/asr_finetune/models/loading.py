"""Loading models and processors: pretrained (Hub id or local dir) or from a config, with overrides."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer, PreTrainedModel

from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ModelArguments:
    """Where the model to fine-tune comes from, and the dtype it is loaded in: the model flags both fine-tuning
    scripts share (each adds its own)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local dir of the model to fine-tune (see README for each script)."}
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "Config (Hub id, dir or config.json) instead of the model's; alone: train from random "
                  "weights."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    torch_dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype to load the weights in. Default float32 (always, when training: mixed precision is "
            "--fp16/--bf16); float16, bfloat16 or auto (the checkpoint's) for evaluation-only runs.",
            "choices": ["auto", "float32", "float16", "bfloat16"],
        },
    )

    def __post_init__(self) -> None:
        require_model_or_config(self.model_name_or_path, self.config_name)


def require_model_or_config(model_name_or_path: str | None, config_name: str | None) -> None:
    if not model_name_or_path and not config_name:
        raise UsageError("Pass --model_name_or_path (pretrained) or --config_name (train from scratch).")

TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")


SHARDED_WEIGHTS = "pytorch_model_fsdp_0"
"""The folder of a sharded FSDP checkpoint's weights (torch.distributed.checkpoint, one file per process)."""


def refuse_training_only_checkpoint(model_name_or_path: str | None) -> None:
    """Refuse, in one line, a local checkpoint folder that only training can resume from: the weights of a sharded
    FSDP run (one part per process) or of a LoRA run before its adapters were merged. The run's output dir holds
    the whole, plain model."""
    if not model_name_or_path or not Path(model_name_or_path).is_dir():
        return
    folder = Path(model_name_or_path)
    weights = folder / "model.safetensors"
    if (folder / SHARDED_WEIGHTS).is_dir() and not weights.is_file():
        raise UsageError(
            f"{folder} is a checkpoint of a sharded (--fsdp) run: its weights are split in one part per process, "
            "which only the training command resumes from. Use the run's output dir (its model.safetensors is the "
            "whole model), or rerun the training command, which publishes it."
        )
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            adapted = any(".lora_A." in name or ".base_layer." in name for name in handle.keys())
        if adapted:
            raise UsageError(
                f"{folder} is a checkpoint of a --use_peft run: its LoRA adapters are not merged into the weights, "
                "and nothing but the training command reads them. Use the run's output dir (its model is merged), "
                "or rerun the training command, which publishes it."
            )


def dtype_kwargs(dtype: torch.dtype | str) -> dict[str, Any]:
    """The ``from_pretrained`` / ``from_config`` keyword for the weights' dtype: ``dtype`` from transformers 4.56 on,
    ``torch_dtype`` before."""
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def weights_dtype(torch_dtype: str | None, training: bool) -> torch.dtype | str:
    """The dtype to load a model in for ``--torch_dtype`` (default float32).

    transformers 5.x keeps a checkpoint's saved dtype, so an fp16 checkpoint (Whisper large-v3, distil-whisper)
    would load in fp16: evaluation then fails on float32 inputs and training would update fp16 weights. Training
    always loads float32 (mixed precision is ``--fp16`` / ``--bf16``); other dtypes are for evaluation-only runs.
    """
    if torch_dtype in (None, "float32"):
        return torch.float32
    if torch_dtype not in TORCH_DTYPES:
        raise UsageError(f"--torch_dtype {torch_dtype!r}: use one of {', '.join(TORCH_DTYPES)}.")
    if training:
        raise UsageError(
            f"--torch_dtype {torch_dtype} is for evaluation-only runs: training loads the weights in float32 and "
            "keeps them there. For mixed precision pass --fp16 or --bf16 instead."
        )
    return torch_dtype if torch_dtype == "auto" else getattr(torch, torch_dtype)


def cast_inputs(inputs: dict[str, Any], model: Any) -> dict[str, Any]:
    """Floating-point model inputs in the model's dtype (a float16 model evaluated on float32 features fails)."""
    dtype = getattr(model, "dtype", torch.float32)
    if dtype == torch.float32:
        return inputs
    return {
        key: value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
        for key, value in inputs.items()
    }


def hub_kwargs(cache_dir: str | None, revision: str | None, token: str | None, trust_remote_code: bool) -> dict:
    """The keyword arguments every ``from_pretrained`` call of a run shares."""
    kwargs: dict[str, Any] = {"cache_dir": cache_dir, "token": token}
    if revision:
        kwargs["revision"] = revision
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def load_feature_extractor(name_or_path: str, **kwargs: Any) -> Any:
    try:
        return AutoFeatureExtractor.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        raise UsageError(
            f"No feature extractor (preprocessor_config.json) found for {name_or_path}: {err}\n"
            "Pass --feature_extractor_name with a model dir or Hub id that has one."
        ) from err


def find_tokenizer(name_or_path: str | None, **kwargs: Any) -> Any | None:
    """The tokenizer a model dir or Hub id carries, or None when it carries none."""
    if not name_or_path:
        return None
    local = Path(name_or_path)
    if local.is_dir() and not any(
        (local / name).exists() for name in ("vocab.json", "tokenizer.json", "tokenizer_config.json")
    ):
        return None
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_ctc_model(
    model_name_or_path: str | None,
    config_name: str | None,
    overrides: dict[str, Any],
    tokenizer: Any,
    dtype: torch.dtype | str = torch.float32,
    **kwargs: Any,
) -> PreTrainedModel:
    """A CTC model whose head matches ``tokenizer``; a mismatched or missing head is (re)initialised and logged.

    With ``config_name`` and no ``model_name_or_path`` the model starts from random weights. ``dtype``: see
    :func:`weights_dtype`.
    """
    refuse_training_only_checkpoint(model_name_or_path)
    config = AutoConfig.from_pretrained(config_name or model_name_or_path, **kwargs)
    previous_vocab = getattr(config, "vocab_size", None)
    config.update(
        {
            **overrides,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
        }
    )
    if not model_name_or_path:
        logger.info("Training from scratch: random weights from config %s.", config_name)
        return AutoModelForCTC.from_config(config, **dtype_kwargs(torch.float32 if dtype == "auto" else dtype))
    model, info = AutoModelForCTC.from_pretrained(
        model_name_or_path,
        config=config,
        ignore_mismatched_sizes=True,
        output_loading_info=True,
        **dtype_kwargs(dtype),
        **kwargs,
    )
    freeze_unused_mask_embedding(model)
    head_missing = any(key.startswith("lm_head") for key in info.get("missing_keys", []))
    head_mismatched = any(
        str(entry[0] if isinstance(entry, tuple) else entry).startswith("lm_head")
        for entry in info.get("mismatched_keys", [])
    )
    if head_mismatched:
        logger.warning(
            "CTC head re-initialised: %s has a %s-token head, the tokenizer has %d tokens. Pass "
            "--tokenizer_name_or_path %s to keep the checkpoint's vocabulary instead.",
            model_name_or_path,
            previous_vocab,
            len(tokenizer),
            model_name_or_path,
        )
    elif head_missing:
        logger.info("CTC head initialised: %s has no CTC head (%d outputs added).", model_name_or_path, len(tokenizer))
    return model


def encoder_frames(config: Any, num_samples: Any, add_adapter: bool | None = None) -> torch.Tensor:
    """Frames a wav2vec2-style encoder makes of inputs of ``num_samples`` samples: its convolutional front end,
    then the adapter's strided layers when ``add_adapter`` (default: the config's setting). Computed from the
    config alone, so data can be filtered before a model exists; tested against the models' own method."""
    lengths = torch.as_tensor(num_samples, dtype=torch.long)
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    if getattr(config, "add_adapter", False) if add_adapter is None else add_adapter:
        for _ in range(config.num_adapter_layers):
            lengths = torch.div(lengths - 1, config.adapter_stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def output_frames(model: PreTrainedModel, num_samples: list[int]) -> list[int]:
    """Encoder output frames for inputs of the given sample counts (what CTC has to fit labels into)."""
    return encoder_frames(model.config, num_samples).tolist()


def use_mean_loss(model: PreTrainedModel) -> PreTrainedModel:
    """Make the Trainer treat the model's loss as the per-batch mean it is.

    Wav2Vec2ForCTC, Whisper and SpeechEncoderDecoderModel average their loss themselves but take ``**kwargs`` in
    forward, so the Trainer assumes they normalise by ``num_items_in_batch``: on transformers 5.x it then skips the
    division by ``--gradient_accumulation_steps`` (measured: seq2seq first logged loss 24.5 instead of 6.1 with 4
    accumulation steps; CTC 18.1 instead of 9.1 with 2), and on 4.5x SpeechEncoderDecoderModel hands the count to
    decoders that refuse it (transformers#35838).
    """
    model.accepts_loss_kwargs = False
    return model


def freeze_unused_mask_embedding(model: PreTrainedModel) -> None:
    """Exclude a wav2vec2-like encoder's SpecAugment mask embedding from training when nothing uses it.

    ``masked_spec_embed`` exists whenever the config has a masking probability, but only time masking with
    ``apply_spec_augment`` puts it in the graph. An unused trainable parameter stops a multi-process run at its
    second step when DDP's unused-parameter search is off (the Trainer turns it off under gradient checkpointing).
    """
    for module in model.modules():
        embed = getattr(module, "masked_spec_embed", None)
        config = getattr(module, "config", None)
        if not isinstance(embed, torch.nn.Parameter) or config is None:
            continue
        used = getattr(config, "apply_spec_augment", True) and getattr(config, "mask_time_prob", 0) > 0
        if not used and embed.requires_grad:
            embed.requires_grad_(False)
            logger.info("SpecAugment time masking is off: its mask embedding is not trained.")
