"""Evaluation steps of our Trainers: CTC decodes only each clip's frames (long clips in chunks); seq2seq gathers
every utterance once and runs Whisper's long-form generation for clips over 30 s."""

from __future__ import annotations

import functools
from typing import Any

import torch

from asr_finetune.evaluation import longform
from asr_finetune.models.loading import (
    cast_inputs,
)
from asr_finetune.models.seq2seq import is_whisper


def blank_padded_frames(logits: torch.Tensor, attention_mask: torch.Tensor, model: Any) -> torch.Tensor:
    """Make frames past each clip's end predict the blank. CTC training never constrains them, so on padded
    batches a model that uses an attention mask emits junk there (trailing letters in every hypothesis)."""
    lengths = model._get_feat_extract_output_lengths(attention_mask.sum(-1)).to(logits.device)
    padded = torch.arange(logits.shape[1], device=logits.device)[None, :] >= lengths[:, None]
    logits = logits.masked_fill(padded[..., None], 0.0)
    blank = model.config.pad_token_id
    logits[..., blank] = logits[..., blank].masked_fill(padded, 1.0)
    return logits


class CTCEvalMixin:
    """Evaluation that decodes only the frames of each clip, not the padding after it; batches holding a clip
    longer than ``longform.CTC_CHUNK_SECONDS`` are run clip by clip in overlapping chunks (memory stays flat)."""

    def prediction_step(
        self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, *args: Any, **kwargs: Any
    ) -> Any:
        attention_mask = inputs.get("attention_mask")
        inputs = cast_inputs(inputs, self.model)
        values = inputs.get("input_values")
        extractor = getattr(self.processing_class, "feature_extractor", self.processing_class)
        rate = getattr(extractor, "sampling_rate", 16_000)
        if values is not None and values.ndim == 2 and values.shape[1] > longform.CTC_CHUNK_SECONDS * rate:
            inputs = self._prepare_inputs(inputs)
            self.model.eval()
            mask, labels = inputs.get("attention_mask"), inputs.get("labels")
            with torch.no_grad():
                logits = longform.ctc_batch_logits(self.model, inputs["input_values"], mask, rate)
                loss = longform.ctc_loss(self.model, logits, mask, labels) if labels is not None else None
            if prediction_loss_only:
                return loss, None, None
        else:
            loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, *args, **kwargs)
        if logits is not None and attention_mask is not None:
            logits = blank_padded_frames(logits, attention_mask, self.model)
        return loss, logits, labels


class Seq2SeqEvalMixin:
    """Evaluation of the seq2seq trainers.

    - Every utterance scored once with several processes: Seq2SeqTrainer gathers predictions with a plain
      ``gather``, which keeps the copies accelerate adds to fill the last batch of each process (7 clips on 2
      processes x 4 gave 8 predictions). Here it gathers with ``gather_for_metrics``, as the CTC trainer does,
      which drops them.
    - Inputs in the model's dtype (``--torch_dtype float16`` runs).
    """

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        gather = self.accelerator.gather_for_metrics
        self.gather_function = functools.partial(gather, use_gather_object=self.args.eval_use_gather_object)
        return super().evaluation_loop(*args, **kwargs)

    def prediction_step(
        self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, *args: Any, **kwargs: Any
    ) -> Any:
        inputs = cast_inputs(inputs, self.model)
        features = inputs.get("input_features")
        window = 2 * getattr(self.model.config, "max_source_positions", 0)  # Whisper: 3000 frames
        if features is None or not is_whisper(self.model.config) or features.shape[-1] <= window:
            return super().prediction_step(model, inputs, prediction_loss_only, *args, **kwargs)
        return self._long_form_step(inputs, window, prediction_loss_only)

    def _long_form_step(self, inputs: dict[str, Any], window: int, prediction_loss_only: bool) -> Any:
        """A batch holding Whisper clips longer than 30 s: the loss over its clips up to 30 s (NaN without any;
        transformers 5.x leaves NaN batches out of eval_loss), and long-form generation for the long ones."""
        inputs = self._prepare_inputs(inputs)
        features, mask, labels = inputs["input_features"], inputs["attention_mask"], inputs.get("labels")
        short = mask.sum(-1) <= window
        loss = torch.tensor(float("nan"), device=features.device)
        self.model.eval()
        with torch.no_grad():
            if labels is not None and bool(short.any()):
                short_labels = labels[short]
                width = int((short_labels >= 0).any(0).nonzero().max()) + 1 if bool((short_labels >= 0).any()) else 1
                loss = self.model(input_features=features[short][..., :window], labels=short_labels[:, :width]).loss
            if prediction_loss_only:
                return loss.detach(), None, None
            gen_kwargs = dict(getattr(self, "_gen_kwargs", {}) or {})
            ids = longform.generate_whisper(self.model, features, mask, window, **gen_kwargs)
        return loss.detach(), ids, labels
