"""Joint CTC-attention training of a warm-started speech encoder-decoder (``--ctc_weight``).

A linear CTC head on the encoder output, over the decoder's own token vocabulary, adds
``ctc_weight * CTC + (1 - ctc_weight) * cross-entropy`` to the loss. CTC forces the encoder output to line up
with the transcript monotonically, which the cross-attention then finds in hundreds of steps instead of
thousands (Kim, Hori & Watanabe 2017). The head only trains: generation, the saved model and ``pipeline`` use
the plain encoder-decoder. Checkpoints keep the head so a resumed run continues with it. The CTC term joins the
model's loss inside its forward, so DDP (torchrun) sees the head as part of the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)

HEAD = "ctc_head"


class CTCHead(nn.Module):
    """Encoder states -> log-probabilities over the decoder's tokens; the pad token is the CTC blank.

    The states are layer-normalised first: CTC then cannot sharpen its posteriors by inflating the encoder
    output, which would saturate the decoder's cross-attention (measured on the demo: output norm 5 -> 100).
    Also keeps the (CTC, attention) losses of the training forwards for the log.
    """

    def __init__(
        self, hidden_size: int, vocab_size: int, blank_id: int, weight: float, special_ids: Sequence[int]
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, vocab_size)
        self.blank_id = blank_id
        self.weight = weight
        self.register_buffer("special_ids", torch.tensor(sorted(set(special_ids)), dtype=torch.long), persistent=False)
        self._sums: torch.Tensor | None = None
        self._count = 0

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.proj(self.norm(hidden_states)).float(), dim=-1)

    def record(self, ctc: torch.Tensor, attention: torch.Tensor) -> None:
        # Kept on the device: a float() here would wait for the GPU on every micro-batch.
        pair = torch.stack([ctc.detach(), attention.detach().float()])
        self._sums = pair if self._sums is None else self._sums + pair
        self._count += 1

    def take_means(self) -> torch.Tensor | None:
        """Mean (CTC, attention) loss of the training forwards since the last call; None when there were none."""
        if not self._count:
            return None
        means = self._sums / self._count
        self._sums, self._count = None, 0
        return means


def _encoder_output_size(encoder_config: Any) -> int:
    if getattr(encoder_config, "add_adapter", False) and getattr(encoder_config, "output_hidden_size", None):
        return encoder_config.output_hidden_size
    return encoder_config.hidden_size


def check_ctc_weight(weight: float) -> None:
    """The one rule for ``--ctc_weight``: 0 (off) or a weight below 1 (1 would leave the decoder untrained)."""
    if not 0 <= weight < 1:
        raise UsageError(f"--ctc_weight {weight}: use a value in [0, 1) (0.3 is usual; 0 = off).")


def attach_ctc_head(model: PreTrainedModel, weight: float, special_ids: Sequence[int], seed: int = 0) -> CTCHead:
    """Add a CTC head (random, seeded) to a warm-started encoder-decoder; resuming a checkpoint restores it.

    The head's loss joins the model's own in its forward (a hook), so DDP sees the head as part of the model.
    ``special_ids``: the tokenizer's special tokens, left out of the CTC targets. Refused for models whose
    encoder output length cannot be derived from the input (Whisper pads every clip to 30 s) and for weights
    outside (0, 1).
    """
    check_ctc_weight(weight)
    encoder = model.get_encoder()
    if model.config.model_type != "speech-encoder-decoder" or not hasattr(
        encoder, "_get_feature_vector_attention_mask"
    ):
        raise UsageError(
            f"--ctc_weight needs a warm-started encoder-decoder with a wav2vec2-like encoder "
            f"(scripts/create_speech_encoder_decoder.py); {model.config.model_type} models take no CTC head."
        )
    blank = model.config.pad_token_id
    vocab = model.config.decoder.vocab_size
    generator = torch.Generator().manual_seed(seed)
    head = CTCHead(_encoder_output_size(model.config.encoder), vocab, blank, weight, special_ids)
    with torch.no_grad():
        bound = head.proj.in_features**-0.5
        head.proj.weight.uniform_(-bound, bound, generator=generator)
        head.proj.bias.zero_()
    model.add_module(HEAD, head)
    model.register_forward_hook(_add_ctc_loss, with_kwargs=True)
    logger.info("Joint CTC-attention training: CTC weight %.2f, %d tokens, blank = pad (%d).", weight, vocab, blank)
    return head


def _add_ctc_loss(model: nn.Module, args: tuple, kwargs: dict[str, Any], outputs: Any) -> Any:
    """Forward hook: with labels, the model's loss becomes ``weight * CTC + (1 - weight) * cross-entropy``."""
    labels = kwargs.get("labels")
    head = getattr(model, HEAD, None)
    if head is None or labels is None or getattr(outputs, "loss", None) is None:
        return outputs
    attention = outputs.loss
    ctc = ctc_loss(model, head, outputs.encoder_last_hidden_state, kwargs.get("attention_mask"), labels)
    outputs.loss = head.weight * ctc + (1 - head.weight) * attention
    if model.training:
        head.record(ctc, attention)
    return outputs


def ctc_loss(
    model: PreTrainedModel,
    head: CTCHead,
    encoder_states: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
) -> torch.Tensor:
    """CTC of the decoder's label tokens (special tokens and -100 padding left out) on the encoder output."""
    batch, frames = encoder_states.shape[:2]
    if attention_mask is not None:
        mask = model.get_encoder()._get_feature_vector_attention_mask(frames, attention_mask)
        input_lengths = mask.sum(-1).long()
    else:
        input_lengths = torch.full((batch,), frames, dtype=torch.long, device=encoder_states.device)
    keep = (labels >= 0) & ~torch.isin(labels, head.special_ids.to(labels.device))
    targets = labels[keep]
    target_lengths = keep.sum(-1)
    log_probs = head(encoder_states).transpose(0, 1)
    # cuDNN's CTC takes only blank 0 and int32 targets on the CPU; the native kernel takes any blank.
    with torch.backends.cudnn.flags(enabled=False):
        return F.ctc_loss(
            log_probs,
            targets,
            input_lengths,
            target_lengths,
            blank=head.blank_id,
            reduction="mean",
            zero_infinity=True,
        )


class JointCTCMixin:
    """Trainer mixin for a model carrying a :class:`CTCHead`: logs both losses, saves the final model without it."""

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        head = getattr(self.model, HEAD, None)
        means = head.take_means() if head is not None and "loss" in logs else None
        if means is not None:
            if self.args.world_size > 1:  # like the logged loss: the mean over processes
                means = self.accelerator.reduce(means, "mean")
            logs["ctc_loss"], logs["attention_loss"] = (round(value, 4) for value in means.tolist())
        super().log(logs, *args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints keep the CTC head (resume); the final model is the plain encoder-decoder."""
        head = getattr(self.model, HEAD, None)
        if head is None or _internal_call:
            return super().save_model(output_dir, _internal_call=_internal_call)
        del self.model._modules[HEAD]
        try:
            return super().save_model(output_dir, _internal_call=_internal_call)
        finally:
            self.model.add_module(HEAD, head)
