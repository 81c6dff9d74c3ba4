"""Long recordings: Whisper's sequential long-form decoding and strided chunks for CTC models.

Used by evaluation (clips longer than a model's window are transcribed, not dropped) and by
``scripts/transcribe.py``. Training still drops clips longer than the window and counts them.

- Whisper sees 30 s at a time. A longer clip's log-mel features are computed over the whole clip, unclipped, with
  an attention mask; transformers' ``generate`` then decodes it window by window, moving on by the timestamps it
  predicts (OpenAI's sequential algorithm). Clips up to 30 s are decoded exactly as before, in their own call.
- A CTC model runs on overlapping windows of ``chunk_length_s`` seconds; of each window's output frames only those
  away from its edges (``stride_length_s`` on each side) are kept, and the kept frames are laid end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from asr_finetune.data.features import extract_features, window_frames
from asr_finetune.evaluation.decoding import capped
from asr_finetune.evaluation.long_audio import LongFile, StreamedWaveform

CTC_CHUNK_SECONDS = 30.0
CTC_STRIDE_SECONDS = 5.0


def generate_whisper(
    model: Any, input_features: torch.Tensor, attention_mask: torch.Tensor | None, window: int, **gen_kwargs: Any
) -> torch.Tensor:
    """Token ids for a batch of Whisper features, some longer than ``window`` frames (their attention masks say
    how long). Short rows are generated as usual (30 s window), long rows with sequential long-form decoding;
    rows are padded with the pad token."""
    if attention_mask is None or input_features.shape[-1] <= window:
        return model.generate(input_features[..., :window], **gen_kwargs)
    lengths = attention_mask.sum(-1)
    long_rows = lengths > window
    outputs: list[torch.Tensor | None] = [None] * len(lengths)
    if (~long_rows).any():
        short = model.generate(input_features[~long_rows][..., :window], **gen_kwargs)
        for row, ids in zip(torch.nonzero(~long_rows).flatten().tolist(), short, strict=True):
            outputs[row] = ids
    longest = int(lengths[long_rows].max())
    long_kwargs = {key: value for key, value in gen_kwargs.items() if key not in ("max_length", "max_new_tokens")}
    long_ids = model.generate(
        input_features[long_rows][..., :longest],
        attention_mask=attention_mask[long_rows][..., :longest],
        return_timestamps=True,
        **long_kwargs,
    )
    if not isinstance(long_ids, torch.Tensor):
        long_ids = long_ids["sequences"]
    for row, ids in zip(torch.nonzero(long_rows).flatten().tolist(), long_ids, strict=True):
        outputs[row] = ids
    pad = model.generation_config.pad_token_id
    pad = pad if pad is not None else model.generation_config.eos_token_id
    width = max(ids.shape[-1] for ids in outputs)
    merged = torch.full((len(outputs), width), pad, dtype=torch.long, device=input_features.device)
    for row, ids in enumerate(outputs):
        merged[row, : ids.shape[-1]] = ids
    return merged


# ---------------------------------------------------------------------------------------------- CTC


def samples_per_frame(model: Any) -> int:
    """Input samples per output frame (320 for wav2vec2-like encoders)."""
    ratio = getattr(model.config, "inputs_to_logits_ratio", None)
    if ratio:
        return int(ratio)
    return int(np.prod(model.config.conv_stride))


def ctc_chunked_logits(
    model: Any,
    samples: torch.Tensor,
    sampling_rate: int,
    chunk_length_s: float | None = None,
    stride_length_s: float | None = None,
    argmax: bool = False,
) -> torch.Tensor:
    """(frames, vocab) logits of one clip (1-D input values), computed on overlapping windows; with ``argmax``,
    the (frames,) best ids only (all a greedy decoding needs: memory stays small for hours of audio).

    Window starts are whole frames apart, so each kept frame is the frame the whole-clip pass would have at that
    position, computed with at least ``stride_length_s`` of context on both sides (except at the clip's ends).
    """
    chunk_length_s = CTC_CHUNK_SECONDS if chunk_length_s is None else chunk_length_s
    stride_length_s = CTC_STRIDE_SECONDS if stride_length_s is None else stride_length_s
    ratio = samples_per_frame(model)
    chunk = max(1, round(chunk_length_s * sampling_rate / ratio)) * ratio
    stride = round(stride_length_s * sampling_rate / ratio) * ratio
    if 2 * stride >= chunk:
        raise ValueError(f"stride {stride_length_s} s on each side leaves nothing of a {chunk_length_s} s chunk.")
    total = samples.shape[-1]
    frames = int(model._get_feat_extract_output_lengths(torch.tensor(total)))
    if total <= chunk:
        logits = model(samples[0:total][None]).logits[0, :frames]
        return logits.argmax(-1) if argmax else logits
    pieces = []
    step = chunk - 2 * stride
    start, kept_until = 0, 0  # kept_until: first frame not yet filled
    while kept_until < frames:
        window = samples[start : start + chunk]
        logits = model(window[None]).logits[0]
        last = start + chunk >= total
        end_frame = frames if last else (start + chunk - stride) // ratio
        local = slice(kept_until - start // ratio, end_frame - start // ratio)
        piece = logits[local]
        if piece.shape[0] < end_frame - kept_until:  # the window's own frame count falls short at the very end
            piece = torch.cat([piece, piece[-1:].expand(end_frame - kept_until - piece.shape[0], -1)])
        pieces.append(piece.argmax(-1) if argmax else piece)
        kept_until = end_frame
        start += step
    return torch.cat(pieces)


def ctc_batch_logits(
    model: Any,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    sampling_rate: int,
    chunk_length_s: float | None = None,
    stride_length_s: float | None = None,
) -> torch.Tensor:
    """(batch, frames, vocab) logits of a padded batch holding clips longer than ``chunk_length_s``: each clip on
    its own, chunked where long; frames past a clip's end are left at zero."""
    if attention_mask is not None:
        lengths = attention_mask.sum(-1)
    else:
        lengths = torch.full((len(input_values),), input_values.shape[1])
    rows = [
        ctc_chunked_logits(model, input_values[row, : int(length)], sampling_rate, chunk_length_s, stride_length_s)
        for row, length in enumerate(lengths.tolist())
    ]
    frames = int(model._get_feat_extract_output_lengths(torch.tensor(input_values.shape[1])))
    batch = rows[0].new_zeros(len(rows), max(frames, *(r.shape[0] for r in rows)), rows[0].shape[-1])
    for row, logits in enumerate(rows):
        batch[row, : logits.shape[0]] = logits
    return batch


def ctc_loss(
    model: Any, logits: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor
) -> torch.Tensor:
    """The loss the CTC model's forward computes, here from logits computed outside it (chunked)."""
    if attention_mask is None:
        attention_mask = torch.ones(logits.shape[0], logits.shape[1] * samples_per_frame(model), dtype=torch.long)
    input_lengths = model._get_feat_extract_output_lengths(attention_mask.sum(-1)).to(torch.long)
    input_lengths = input_lengths.clamp(max=logits.shape[1])
    mask = labels >= 0
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    return F.ctc_loss(
        log_probs,
        labels.masked_select(mask),
        input_lengths,
        mask.sum(-1),
        blank=model.config.pad_token_id,
        reduction=model.config.ctc_loss_reduction,
        zero_infinity=model.config.ctc_zero_infinity,
    )


# ---------------------------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class Timed:
    """A stretch of a recording and its text: a Whisper segment, or a word of a CTC model (seconds)."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """One recording's text; ``segments`` from Whisper's timestamps (one segment spanning the clip for models
    that predict none), ``words`` from a CTC model's argmax frames (empty for seq2seq models)."""

    text: str
    segments: list[Timed] = field(default_factory=list)
    words: list[Timed] = field(default_factory=list)


def _model_inputs(processor: Any, samples: np.ndarray | LongFile,
                  dtype: torch.dtype) -> tuple[Any, Any, dict[str, Any], int]:
    """(feature extractor, the model's input for the clip, other extractor outputs, rate). A :class:`LongFile`
    gives its input as it is read: a streamed waveform (CTC) or Whisper features computed block by block."""
    feature_extractor = getattr(processor, "feature_extractor", processor)
    rate = feature_extractor.sampling_rate
    if isinstance(samples, LongFile):
        if feature_extractor.model_input_names[0] == "input_values":
            return feature_extractor, samples.waveform(feature_extractor), {}, rate
        inputs = samples.whisper_features(feature_extractor).to(dtype)
        return feature_extractor, inputs, {"attention_mask": torch.ones(1, inputs.shape[-1], dtype=torch.long)}, rate
    features = extract_features(feature_extractor, samples, rate)
    name = feature_extractor.model_input_names[0]
    inputs = torch.as_tensor(np.asarray(features[name])).to(dtype)  # (1, ...): extractors return batches
    return feature_extractor, inputs, features, rate


def _one_clip(inputs: Any) -> Any:
    """A CTC model's input for its one clip: the batch's row, or the streamed waveform as it is."""
    return inputs if isinstance(inputs, StreamedWaveform) else inputs[0]


@torch.no_grad()
def transcribe(model: Any, processor: Any, samples: np.ndarray, **gen_kwargs: Any) -> str:
    """Text of one clip of any length (mono float samples at the feature extractor's rate)."""
    feature_extractor, inputs, features, rate = _model_inputs(processor, samples, model.dtype)
    model.eval()
    if getattr(model.config, "is_encoder_decoder", False):
        window = window_frames(feature_extractor)
        if window is None or inputs.shape[-1] <= window:  # one generate call: new tokens capped by the duration
            gen_kwargs = capped(gen_kwargs, len(samples) / rate, model)
        if window is not None:
            mask = torch.as_tensor(np.asarray(features["attention_mask"])) if "attention_mask" in features else None
            ids = generate_whisper(model, inputs, mask, window, **gen_kwargs)
        else:
            ids = model.generate(inputs, **gen_kwargs)
        return processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()
    return ctc_words(model, processor.tokenizer, _one_clip(inputs), rate, getattr(processor, "decoder", None)).text


@torch.no_grad()
def transcribe_timed(model: Any, processor: Any, samples: np.ndarray, **gen_kwargs: Any) -> Transcript:
    """Text of one clip of any length with times: Whisper decodes with timestamps (its segments), a CTC model gives
    word offsets from its argmax frames (the same text as :func:`transcribe`), other seq2seq models one segment."""
    feature_extractor, inputs, features, rate = _model_inputs(processor, samples, model.dtype)
    duration = round(len(samples) / rate, 3)
    model.eval()
    if not getattr(model.config, "is_encoder_decoder", False):
        return ctc_words(model, processor.tokenizer, _one_clip(inputs), rate, getattr(processor, "decoder", None))
    window = window_frames(feature_extractor)
    if window is None:  # no timestamps to predict: one segment over the clip
        ids = model.generate(inputs, **capped(gen_kwargs, duration, model))
        text = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
        return Transcript(text.strip(), [Timed(0.0, duration, text.strip())])
    kwargs = {key: value for key, value in gen_kwargs.items() if key not in ("max_length", "max_new_tokens")}
    if inputs.shape[-1] > window and "attention_mask" in features:
        kwargs["attention_mask"] = torch.as_tensor(np.asarray(features["attention_mask"]))
    else:
        inputs = inputs[..., :window]
        kwargs = capped(kwargs, duration, model)
    output = model.generate(inputs, return_timestamps=True, return_segments=True, **kwargs)
    segments = []
    for segment in output["segments"][0]:
        text = processor.tokenizer.decode(segment["tokens"], skip_special_tokens=True).strip()
        if text:
            segments.append(Timed(round(float(segment["start"]), 3), round(min(float(segment["end"]), duration), 3),
                                  text))  # fmt: skip
    return Transcript(" ".join(segment.text for segment in segments), segments)


def ctc_words(model: Any, tokenizer: Any, input_values: Any, sampling_rate: int, decoder: Any = None) -> Transcript:
    """Argmax decoding of one clip (chunked when long; a tensor or a :class:`StreamedWaveform`), with each word's
    time from the frames it spans; with an n-gram LM ``decoder`` (a ``Wav2Vec2ProcessorWithLM``'s), beam search
    over the clip's logits as ``pipeline()`` does."""
    seconds_per_frame = samples_per_frame(model) / sampling_rate
    duration = round(len(input_values) / sampling_rate, 3)
    if decoder is not None:
        logits = ctc_chunked_logits(model, input_values, sampling_rate).float().numpy()
        return ctc_transcript(logits, tokenizer, seconds_per_frame, duration, decoder)
    ids = ctc_chunked_logits(model, input_values, sampling_rate, argmax=True).numpy()
    return ctc_transcript(ids, tokenizer, seconds_per_frame, duration)


def ctc_transcript(
    frames: np.ndarray, tokenizer: Any, seconds_per_frame: float, duration: float, decoder: Any = None
) -> Transcript:
    """The text and word times of one clip's CTC output: best ids per frame (frames,), or logits (frames, vocab)
    for beam search with an n-gram LM ``decoder``.

    A tokenizer without word offsets (phoneme tokenizers) gives the text and one segment over the clip.
    """
    if decoder is not None:
        text, _, spans, *_ = decoder.decode_beams(frames)[0]
        text = " ".join(text.split())
        offsets = [{"word": word, "start_offset": start, "end_offset": end} for word, (start, end) in spans]
    else:
        decoded = tokenizer.decode(frames.tolist(), output_word_offsets=True)
        text = (decoded if isinstance(decoded, str) else decoded.text).strip()
        offsets = getattr(decoded, "word_offsets", None) or []
    words = [Timed(round(w["start_offset"] * seconds_per_frame, 3), round(w["end_offset"] * seconds_per_frame, 3),
                   w["word"]) for w in offsets]  # fmt: skip
    return Transcript(text, [Timed(0.0, duration, text)] if text and not words else [], words)
