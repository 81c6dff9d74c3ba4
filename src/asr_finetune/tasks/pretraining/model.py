"""The model pretraining starts from: its config and feature extractor checked for pretraining, random weights,
and the weight-decay parameter groups. The training loop lives in :mod:`asr_finetune.tasks.pretraining.loop`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig, Wav2Vec2ForPreTraining

from asr_finetune.errors import UsageError
from asr_finetune.models.loading import load_feature_extractor
from asr_finetune.tasks.pretraining.arguments import PretrainingArguments

logger = logging.getLogger(__name__)


class PretrainingConfigError(UsageError):
    """A model config or feature extractor that wav2vec2 pretraining cannot use; the message names the setting."""


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
