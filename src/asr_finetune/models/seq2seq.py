"""Sequence-to-sequence models: loading Whisper or a warm-started encoder-decoder with their tokenizer and
processor, freezing, and Whisper's language/task prefix shared by labels and generation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForSpeechSeq2Seq,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
    WhisperFeatureExtractor,
    WhisperProcessor,
)

from asr_finetune.errors import UsageError
from asr_finetune.models.loading import (
    dtype_kwargs,
    find_tokenizer,
    freeze_unused_mask_embedding,
    refuse_training_only_checkpoint,
    use_mean_loss,
)

logger = logging.getLogger(__name__)


TASKS = ("transcribe", "translate")


# ---------------------------------------------------------------------------------------------- processor


def load_tokenizer(name_or_path: str, use_fast: bool = True, **kwargs: Any) -> Any:
    """The tokenizer of a model dir or Hub id; an error that says what to pass when there is none."""
    tokenizer = find_tokenizer(name_or_path, use_fast=use_fast, **kwargs)
    if tokenizer is None:
        raise UsageError(
            f"No tokenizer found in {name_or_path}. Pass --tokenizer_name with the decoder's checkpoint or a "
            "tokenizer dir (a model made by scripts/create_speech_encoder_decoder.py carries its decoder's tokenizer)."
        )
    return tokenizer


def make_processor(feature_extractor: Any, tokenizer: Any) -> Any:
    """One object holding both halves, saved with every checkpoint (the Trainer's ``processing_class``)."""
    if isinstance(feature_extractor, WhisperFeatureExtractor):
        return WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    if isinstance(feature_extractor, Wav2Vec2FeatureExtractor):
        return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    return feature_extractor


def save_processor(directory: str | Path, processor: Any, feature_extractor: Any, tokenizer: Any) -> None:
    """Write processor, feature extractor and tokenizer files, so AutoProcessor / pipeline (4.x and 5.x) find them."""
    if processor is not feature_extractor:
        processor.save_pretrained(str(directory))
    feature_extractor.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def input_window_seconds(feature_extractor: Any) -> float | None:
    """The fixed input length of models that pad every clip to one window (Whisper: 30 s), else None."""
    samples = getattr(feature_extractor, "n_samples", None)
    return samples / feature_extractor.sampling_rate if samples else None


# ---------------------------------------------------------------------------------------------- decoder config


def consistent_decoder_layers(decoder_config: Any, name: str) -> None:
    """Make a decoder config's layer count what the generation cache is sized by.

    transformers sizes the key/value cache from ``num_hidden_layers``, which BART-type configs map to
    ``encoder_layers``; a decoder taken from such a config with more decoder than encoder layers fails inside
    ``generate`` with an IndexError. Its encoder part is never built here, so ``encoder_layers`` is set to the
    decoder's count (and saved so). A config that still disagrees is refused by name.
    """
    layers = getattr(decoder_config, "decoder_layers", None)
    if not isinstance(layers, int) or getattr(decoder_config, "num_hidden_layers", layers) == layers:
        return
    if hasattr(decoder_config, "encoder_layers"):
        logger.info(
            "%s: %s config with %d decoder and %d encoder layers; setting encoder_layers = %d in the decoder config "
            "(the generation cache is sized from it; the encoder half is not used).",
            name, decoder_config.model_type, layers, decoder_config.encoder_layers, layers,
        )  # fmt: skip
        decoder_config.encoder_layers = layers
        if getattr(decoder_config, "num_hidden_layers", layers) != layers:  # a plain attribute on transformers 4.x
            decoder_config.num_hidden_layers = layers
    if getattr(decoder_config, "num_hidden_layers", layers) != layers:
        raise UsageError(
            f"{name}: the decoder config has decoder_layers={layers} but num_hidden_layers="
            f"{decoder_config.num_hidden_layers}; generation would index past its cache. Make them equal in its "
            "config.json."
        )


# ---------------------------------------------------------------------------------------------- model


def is_whisper(config: Any) -> bool:
    return getattr(config, "model_type", None) == "whisper"


def _encoder_config(config: Any) -> Any:
    return config.encoder if getattr(config, "model_type", None) == "speech-encoder-decoder" else config


def _decoder_config(config: Any) -> Any:
    return config.decoder if getattr(config, "model_type", None) == "speech-encoder-decoder" else config


def load_seq2seq_model(
    model_name_or_path: str | None,
    config_name: str | None,
    *,
    apply_spec_augment: bool | None,
    dtype: torch.dtype | str = torch.float32,
    **kwargs: Any,
) -> PreTrainedModel:
    """A speech seq2seq model (Whisper, warm-started encoder-decoder, ...), SpecAugment on or off as asked.

    With ``config_name`` alone the model starts from random weights. ``dtype``: float32 unless evaluating only
    (:func:`asr_finetune.models.loading.weights_dtype`); transformers 5.x would otherwise keep an fp16 checkpoint in
    fp16.
    """
    refuse_training_only_checkpoint(model_name_or_path)
    config = AutoConfig.from_pretrained(config_name or model_name_or_path, **kwargs)
    if getattr(config, "model_type", None) == "speech-encoder-decoder":
        consistent_decoder_layers(config.decoder, model_name_or_path or config_name)
    encoder_config = _encoder_config(config)
    if apply_spec_augment is None and is_whisper(config):
        apply_spec_augment = False  # the reference's default for Whisper; other encoders keep their config's
    if hasattr(encoder_config, "apply_spec_augment"):
        if apply_spec_augment is not None:
            encoder_config.apply_spec_augment = apply_spec_augment
        logger.info(
            "SpecAugment in the %s encoder: %s.", encoder_config.model_type,
            "on" if encoder_config.apply_spec_augment else "off",
        )  # fmt: skip
    elif apply_spec_augment:
        logger.warning(
            "%s encoders have no SpecAugment setting: --apply_spec_augment has no effect.", encoder_config.model_type
        )
    if model_name_or_path:
        model = AutoModelForSpeechSeq2Seq.from_pretrained(
            model_name_or_path, config=config, **dtype_kwargs(dtype), **kwargs
        )
    else:
        logger.info("Training from scratch: random weights from config %s.", config_name)
        model = AutoModelForSpeechSeq2Seq.from_config(
            config, **dtype_kwargs(torch.float32 if dtype == "auto" else dtype)
        )
    use_mean_loss(model)
    freeze_unused_mask_embedding(model)
    for name in ("decoder_start_token_id", "pad_token_id"):
        if getattr(model.config, name, None) is None and getattr(model.generation_config, name, None) is None:
            raise UsageError(
                f"{model_name_or_path or config_name} has no {name}. Make a warm-started model with "
                "scripts/create_speech_encoder_decoder.py (it sets decoder_start/pad/eos ids from the decoder)."
            )
    return model


def freeze(model: PreTrainedModel, *, feature_encoder: bool, encoder: bool) -> None:
    """Freeze the convolutional front end and/or the whole encoder (an encoder adapter keeps training)."""
    if feature_encoder:
        if hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()
        else:
            logger.info(
                "%s has no separate feature encoder; --freeze_feature_encoder has no effect "
                "(--freeze_encoder freezes the whole encoder).",
                model.config.model_type,
            )
    if encoder:
        if hasattr(model, "freeze_encoder"):
            model.freeze_encoder()
        else:
            model.get_encoder().requires_grad_(False)
        adapter = getattr(model.get_encoder(), "adapter", None)
        if adapter is not None:
            adapter.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("Trainable parameters: %d of %d (%.1f%%).", trainable, total, 100 * trainable / max(total, 1))


def whisper_language_code(language: str) -> str:
    """'Hindi', 'hindi', 'hi' or '<|hi|>' -> 'hi'; an unknown language is an error listing some valid ones."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    key = language.strip().lower().removeprefix("<|").removesuffix("|>")
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise UsageError(
        f"--language {language!r} is not a Whisper language. Use a name or code, e.g. english/en, hindi/hi, "
        f"german/de (all {len(LANGUAGES)}: {', '.join(sorted(LANGUAGES))})."
    )


def set_language_and_task(
    model: PreTrainedModel, tokenizer: Any, language: str | None, task: str, model_name: str
) -> str | None:
    """Make training labels and generation start with the same Whisper prefix: <|sot|> <|lang|> <|task|> ...

    Sets the tokenizer's prefix tokens (labels) and ``model.generation_config`` language/task (evaluation, and the
    saved model the pipeline uses), and clears the legacy ``forced_decoder_ids`` that would compete with them.
    Returns the language code (None when not set). Non-Whisper models take neither flag.
    """
    if task not in TASKS:
        raise UsageError(f"--task {task!r}: use one of {', '.join(TASKS)}.")
    if not is_whisper(model.config):
        if language or task != "transcribe":
            raise UsageError(
                f"--language / --task set Whisper's prefix tokens; {model_name} is a {model.config.model_type} "
                "model without them. Drop these flags (the decoder learns whatever language the transcripts are in)."
            )
        return None
    generation = model.generation_config
    multilingual = getattr(generation, "is_multilingual", None)
    if multilingual is None:
        multilingual = bool(getattr(generation, "lang_to_id", None))
    if not multilingual:
        if language or task == "translate":
            given = f"--language {language}" if language else "--task translate"
            raise UsageError(
                f"{model_name} is an English-only Whisper checkpoint: it cannot take {given}. Drop the flag to "
                "fine-tune it on English, or use a multilingual checkpoint (the same name without '.en')."
            )
        return None
    carried = getattr(generation, "language", None) or getattr(tokenizer, "language", None)
    code = whisper_language_code(language or carried) if (language or carried) else None
    if code and tokenizer.convert_tokens_to_ids(f"<|{code}|>") in (None, tokenizer.unk_token_id):
        raise UsageError(
            f"The tokenizer of {model_name} has no <|{code}|> token: --language {language or code} is not "
            "one of this checkpoint's languages."
        )
    if code is None:
        logger.warning(
            "No --language: labels carry no language token and generation detects the language of each clip. "
            "Pass --language when the data is in one language."
        )
    elif not language:
        logger.info("No --language: keeping the language %s carries (%s).", model_name, code)
    # Set the attributes, then rebuild: set_prefix_tokens(language=None) would keep a language set earlier.
    tokenizer.language, tokenizer.task, tokenizer.predict_timestamps = code, task, False
    tokenizer.set_prefix_tokens()
    generation.language = code
    generation.task = task
    for holder in (generation, model.config):
        if getattr(holder, "forced_decoder_ids", None) is not None:
            holder.forced_decoder_ids = None
    logger.info("Whisper prefix: %s", " ".join(tokenizer.convert_ids_to_tokens(tokenizer.prefix_tokens)))
    return code


def is_english(model: PreTrainedModel, language: str | None) -> bool:
    """True for a Whisper run on English: an English-only (``.en``) checkpoint or ``--language en``."""
    if not is_whisper(model.config):
        return False
    generation = model.generation_config
    multilingual = getattr(generation, "is_multilingual", None)
    if multilingual is None:
        multilingual = bool(getattr(generation, "lang_to_id", None))
    return language == "en" or not multilingual


def complete_generation_config(model: PreTrainedModel, tokenizer: Any) -> None:
    """Give generation the start / pad / eos ids the model config has, so evaluation and the pipeline agree."""
    generation = model.generation_config
    for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
        if getattr(generation, name, None) is None:
            setattr(generation, name, getattr(model.config, name, None))
    if generation.pad_token_id is None:
        pad = tokenizer.pad_token_id
        generation.pad_token_id = pad if pad is not None else generation.eos_token_id


def decoder_start_token_id(model: PreTrainedModel) -> int:
    start = getattr(model.generation_config, "decoder_start_token_id", None)
    return start if start is not None else model.config.decoder_start_token_id


def decoder_max_positions(config: Any) -> int | None:
    """How many label tokens the decoder can take (Whisper: max_target_positions 448; BART: 1024)."""
    decoder = _decoder_config(config)
    for name in ("max_target_positions", "max_position_embeddings", "n_positions"):
        value = getattr(decoder, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
