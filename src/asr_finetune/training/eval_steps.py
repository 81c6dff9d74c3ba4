"""Evaluation steps of our Trainers: CTC decodes only each clip's frames (long clips in chunks); seq2seq gathers
every utterance once, caps generated tokens by each batch's longest clip and runs Whisper's long-form generation
for clips over 30 s."""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch

from asr_finetune.data.collators import LONGEST_KEY
from asr_finetune.evaluation import decoding, longform
from asr_finetune.models.loading import (
    cast_inputs,
)
from asr_finetune.models.seq2seq import is_whisper

logger = logging.getLogger(__name__)


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
    - New tokens capped by the batch's longest clip (:mod:`asr_finetune.evaluation.decoding`; evaluation batches
      run longest first, so their clips are alike): a looping hypothesis costs a few tokens more than its clip
      holds. The hypotheses the cap cut are counted (``eval_hypotheses_cut``) and named in a warning.
    """

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        gather = self.accelerator.gather_for_metrics
        self.gather_function = functools.partial(gather, use_gather_object=self.args.eval_use_gather_object)
        self._hypotheses_cut = 0
        output = super().evaluation_loop(*args, **kwargs)
        cut = int(self.accelerator.reduce(torch.tensor(self._hypotheses_cut, device=self.args.device), "sum"))
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        output.metrics[f"{prefix}_hypotheses_cut"] = cut
        if cut and self.is_world_process_zero():
            logger.warning("%d hypothesis(es) were still going when they reached the token cap (%d tokens a second of "
                           "audio + %d, or --generation_max_length): their text is cut there. A model that repeats "
                           "itself is the usual cause.", cut, decoding.TOKENS_PER_SECOND,
                           decoding.EXTRA_TOKENS)  # fmt: skip
        return output

    def prediction_step(
        self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, *args: Any, **kwargs: Any
    ) -> Any:
        inputs = cast_inputs(inputs, self.model)
        longest = inputs.pop(LONGEST_KEY, None)
        features = inputs.get("input_features")
        window = 2 * getattr(self.model.config, "max_source_positions", 0)  # Whisper: 3000 frames
        if features is not None and is_whisper(self.model.config) and features.shape[-1] > window:
            return self._long_form_step(inputs, window, prediction_loss_only)
        counter = None
        if not prediction_loss_only and self.args.predict_with_generate and longest:  # 0: durations unknown
            gen_kwargs = decoding.capped({**(getattr(self, "_gen_kwargs", {}) or {}), **kwargs}, float(longest),
                                         self.model)  # fmt: skip
            kwargs, counter = decoding.with_cut_count(gen_kwargs, self.model)
        result = super().prediction_step(model, inputs, prediction_loss_only, *args, **kwargs)
        if counter is not None:
            self._hypotheses_cut = getattr(self, "_hypotheses_cut", 0) + counter.cut
        return result

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
