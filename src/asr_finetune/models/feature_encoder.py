"""A faster forward on CPU for the conv feature encoders of wav2vec2-family models that layer-normalise every conv
layer (``feat_extract_norm="layer"``: XLS-R, wav2vec2-large-lv60, HuBERT and WavLM large, ...).

transformers runs each conv layer channels-first and transposes around the layer norm, so GELU and its backward
see strided tensors, which on CPU take a slow path (measured here: 53 ms against 8 ms for one 16 x 64 x 7359
GELU backward), and every conv copies its input back. This forward keeps the audio time-major (batch, time,
channels) from the first layer to the last, and runs each conv as windows times a matrix, the same arithmetic
with the same weights: outputs and gradients match transformers' to float rounding, and checkpoints are unchanged
(only ``forward`` is replaced, on the model's own encoder object). Encoders with ``feat_extract_norm="group"``
(wav2vec2-base) keep transformers' forward: they have no transposes, and the conv library beats windows times a
matrix there (measured: 54 against 114 ms for a step of the encoder alone).

``ASR_FINETUNE_FAST_FEATURE_ENCODER=0`` keeps transformers' forward.
"""

from __future__ import annotations

import logging
import os
import types
from typing import Any

import torch
from torch import nn

from asr_finetune.args import FALSE_WORDS, is_bool_word
from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)

SWITCH_ENV = "ASR_FINETUNE_FAST_FEATURE_ENCODER"


class _Windows(torch.autograd.Function):
    """The windows of a time-major signal, ``(batch, frames, kernel * channels)``, each window one contiguous
    slice of the input. Its backward adds the window gradients back with ``kernel`` strided adds (or
    ``kernel / stride`` whole-block adds), where autograd's own ``unfold`` backward takes a slow general path."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        batch, time, channels = hidden.shape
        frames = (time - kernel) // stride + 1
        ctx.kernel, ctx.stride, ctx.time = kernel, stride, time
        return hidden.unfold(1, kernel, stride).transpose(2, 3).reshape(batch, frames, kernel * channels)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        kernel, stride = ctx.kernel, ctx.stride
        batch, frames, width = grad.shape
        channels = width // kernel
        grad = grad.view(batch, frames, kernel, channels)
        grad_hidden = grad.new_zeros(batch, ctx.time, channels)
        if kernel % stride == 0:  # each block of ``stride`` window rows lands on a contiguous stretch of time
            for block in range(kernel // stride):
                start = block * stride
                target = grad_hidden[:, start : start + frames * stride].view(batch, frames, stride, channels)
                target.add_(grad[:, :, start : start + stride])
        else:
            for offset in range(kernel):
                grad_hidden[:, offset : offset + stride * (frames - 1) + 1 : stride].add_(grad[:, :, offset])
        return grad_hidden, None, None


def conv_time_major(hidden: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` applied to time-major ``hidden`` (batch, time, channels); the result is time-major too."""
    out_channels, in_channels, kernel = conv.weight.shape
    # (kernel * in_channels, out_channels), row-major: the weight's gradient is then windows^T @ grad, several
    # times faster here than the (grad^T @ windows)^T autograd picks for a transposed weight
    weight = conv.weight.permute(2, 1, 0).reshape(kernel * in_channels, out_channels).contiguous()
    out = _Windows.apply(hidden, kernel, conv.stride[0]) @ weight
    return out if conv.bias is None else out + conv.bias


def _fast_forward(encoder: nn.Module, input_values: torch.Tensor) -> torch.Tensor:
    if getattr(encoder, "gradient_checkpointing", False) or any(
        getattr(layer, "gradient_checkpointing", False) for layer in encoder.conv_layers
    ):
        return type(encoder).forward(encoder, input_values)  # transformers checkpoints its own layers
    # transformers also marks the audio as requiring grad, which only its checkpointing (above) needs
    hidden = input_values[:, :, None]
    for layer in encoder.conv_layers:
        hidden = layer.activation(layer.layer_norm(conv_time_major(hidden, layer.conv)))
    return hidden.transpose(1, 2)  # (batch, channels, frames), the shape callers expect


def _supported(encoder: nn.Module) -> bool:
    layers = getattr(encoder, "conv_layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return False
    for layer in layers:
        conv, norm = getattr(layer, "conv", None), getattr(layer, "layer_norm", None)
        if not isinstance(conv, nn.Conv1d) or conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            return False
        if not isinstance(norm, nn.LayerNorm) or not hasattr(layer, "activation"):
            return False
    return True


def speed_up_feature_encoders(model: nn.Module, device_type: str) -> int:
    """Give each conv feature encoder in ``model`` the time-major forward, on CPU (the only device it was measured
    on) unless ``ASR_FINETUNE_FAST_FEATURE_ENCODER=0``; logged. Returns how many encoders it changed."""
    switch = os.environ.get(SWITCH_ENV, "1")
    if not is_bool_word(switch):
        raise UsageError(f"{SWITCH_ENV}={switch!r}: use 1 (the default) or 0.")
    if device_type != "cpu" or switch.strip().lower() in FALSE_WORDS:
        return 0
    changed = 0
    for module in model.modules():
        if type(module).__name__.endswith("FeatureEncoder") and _supported(module):
            module.forward = types.MethodType(_fast_forward, module)
            changed += 1
    if changed:
        logger.info("Conv feature encoder: time-major forward on CPU (%s=0 keeps transformers' own).", SWITCH_ENV)
    return changed


def uses_fast_forward(model: Any) -> bool:
    """Whether any feature encoder of ``model`` runs the time-major forward."""
    return any(getattr(m.forward, "__func__", None) is _fast_forward for m in model.modules())
