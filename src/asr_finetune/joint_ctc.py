"""Joint CTC-attention training of a warm-started speech encoder-decoder (``--ctc_weight``).

A linear CTC head on the encoder output, over the decoder's own token vocabulary, adds
``ctc_weight * CTC + (1 - ctc_weight) * cross-entropy`` to the loss. CTC forces the encoder output to line up
with the transcript monotonically, which the cross-attention then finds in hundreds of steps instead of
thousands (Kim, Hori & Watanabe 2017). The head only trains: generation, the saved model and ``pipeline`` use
the plain encoder-decoder. Checkpoints keep the head so a resumed run continues with it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

HEAD = "ctc_head"


class CTCHead(nn.Module):
    """Encoder states -> log-probabilities over the decoder's tokens; the pad token is the CTC blank.

    The states are layer-normalised first: CTC then cannot sharpen its posteriors by inflating the encoder
    output, which would saturate the decoder's cross-attention (measured on the demo: output norm 5 -> 100).
    """

    def __init__(self, hidden_size: int, vocab_size: int, blank_id: int, weight: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.proj = nn.Linear(hidden_size, vocab_size)
        self.blank_id = blank_id
        self.weight = weight

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.proj(self.norm(hidden_states)).float(), dim=-1)


def _encoder_output_size(encoder_config: Any) -> int:
    if getattr(encoder_config, "add_adapter", False) and getattr(encoder_config, "output_hidden_size", None):
        return encoder_config.output_hidden_size
    return encoder_config.hidden_size


def attach_ctc_head(model: PreTrainedModel, weight: float, seed: int = 0) -> CTCHead:
    """Add a CTC head (random, seeded) to a warm-started encoder-decoder; resuming a checkpoint restores it.

    Refused for models whose encoder output length cannot be derived from the input (Whisper pads every clip
    to 30 s) and for weights outside (0, 1).
    """
    if not 0 < weight < 1:
        raise ValueError(f"--ctc_weight {weight}: use a value between 0 and 1 (0.3 is usual), or 0 to turn it off.")
    encoder = model.get_encoder()
    if model.config.model_type != "speech-encoder-decoder" or not hasattr(
        encoder, "_get_feature_vector_attention_mask"
    ):
        raise ValueError(
            f"--ctc_weight needs a warm-started encoder-decoder with a wav2vec2-like encoder "
            f"(scripts/create_speech_encoder_decoder.py); {model.config.model_type} models take no CTC head."
        )
    blank = model.config.pad_token_id
    vocab = model.config.decoder.vocab_size
    generator = torch.Generator().manual_seed(seed)
    head = CTCHead(_encoder_output_size(model.config.encoder), vocab, blank, weight)
    with torch.no_grad():
        bound = head.proj.in_features**-0.5
        head.proj.weight.uniform_(-bound, bound, generator=generator)
        head.proj.bias.zero_()
    model.add_module(HEAD, head)
    logger.info("Joint CTC-attention training: CTC weight %.2f, %d tokens, blank = pad (%d).", weight, vocab, blank)
    return head


def ctc_loss(
    model: PreTrainedModel,
    head: CTCHead,
    encoder_states: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    special_ids: torch.Tensor,
) -> torch.Tensor:
    """CTC of the decoder's label tokens (special tokens and -100 padding left out) on the encoder output."""
    batch, frames = encoder_states.shape[:2]
    if attention_mask is not None:
        mask = model.get_encoder()._get_feature_vector_attention_mask(frames, attention_mask)
        input_lengths = mask.sum(-1).long()
    else:
        input_lengths = torch.full((batch,), frames, dtype=torch.long, device=encoder_states.device)
    keep = (labels >= 0) & ~torch.isin(labels, special_ids.to(labels.device))
    targets = labels[keep]
    target_lengths = keep.sum(-1)
    log_probs = head(encoder_states).transpose(0, 1)
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
    """Trainer mixin: adds the CTC term when the model carries a :class:`CTCHead`, logs both losses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._joint_sums = {"ctc_loss": 0.0, "attention_loss": 0.0, "count": 0}
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        self._special_ids = torch.tensor(sorted(set(getattr(tokenizer, "all_special_ids", []))), dtype=torch.long)

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        head = getattr(self.model, HEAD, None)
        if head is None or "labels" not in inputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        outputs = model(**inputs)
        attention = outputs.loss
        ctc = ctc_loss(
            self.model,
            head,
            outputs.encoder_last_hidden_state,
            inputs.get("attention_mask"),
            inputs["labels"],
            self._special_ids,
        )
        loss = head.weight * ctc + (1 - head.weight) * attention
        if model.training:
            self._joint_sums["ctc_loss"] += float(ctc.detach())
            self._joint_sums["attention_loss"] += float(attention.detach())
            self._joint_sums["count"] += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        count = self._joint_sums["count"]
        if "loss" in logs and count:
            logs["ctc_loss"] = round(self._joint_sums["ctc_loss"] / count, 4)
            logs["attention_loss"] = round(self._joint_sums["attention_loss"] / count, 4)
            self._joint_sums = {"ctc_loss": 0.0, "attention_loss": 0.0, "count": 0}
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
