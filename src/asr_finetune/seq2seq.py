"""Sequence-to-sequence steps: the warm-started encoder-decoder, Whisper's prefix tokens, labels that fit the
decoder, generation settings, freezing, and metrics from generated text."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSpeechSeq2Seq,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
    WhisperFeatureExtractor,
    WhisperProcessor,
    set_seed,
)

from . import longform
from .batching import BatchingArguments
from .data import DataArguments, DropCounts, drop_rows, drop_too_short_for_masks
from .errors import UsageError
from .metrics import METRICS_HELP, TranscriptMetrics, check_metric_names, valid_ids
from .modeling import (
    ModelArguments,
    cast_inputs,
    dtype_kwargs,
    encoder_frames,
    find_tokenizer,
    freeze_unused_mask_embedding,
    use_mean_loss,
)
from .streaming import StreamingArguments, is_stream
from .text import TextNormalizer, resolve_text_language

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- arguments


@dataclass
class Seq2SeqModelArguments(ModelArguments):
    """Model options of run_speech_recognition_seq2seq.py."""

    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer dir or Hub id, if not the model's."})
    feature_extractor_name: str | None = field(
        default=None, metadata={"help": "Feature extractor dir or Hub id, if not the model's."}
    )
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast (tokenizers-backed) tokenizer."})
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Do not train the convolutional front end (wav2vec2-like encoders)."}
    )
    freeze_encoder: bool = field(default=False, metadata={"help": "Train the decoder only (an adapter still trains)."})
    apply_spec_augment: bool | None = field(
        default=None,
        metadata={
            "help": "SpecAugment on the encoder input, with the mask settings of the model's config. Default: off "
            "for Whisper, the encoder config's own setting for a wav2vec2-like encoder (as the reference script)."
        },
    )
    ctc_weight: float = field(
        default=0.0,
        metadata={
            "help": "Joint CTC-attention training of a warm-started encoder-decoder: weight of a CTC loss on the "
            "encoder output (0.3 is usual; 0 = off). The CTC head trains only; the saved model does not carry it."
        },
    )
    def __post_init__(self) -> None:
        from .joint_ctc import check_ctc_weight

        check_ctc_weight(self.ctc_weight)
        super().__post_init__()


@dataclass
class Seq2SeqDataArguments(DataArguments):
    """Data and text options of run_speech_recognition_seq2seq.py."""

    train_split_name: str = field(
        default="train", metadata={"help": "Training split expression, e.g. 'train', 'train+validation'."}
    )
    do_lower_case: bool = field(default=True, metadata={"help": "Lower-case transcripts (and hypotheses for WER)."})
    language: str | None = field(
        default=None,
        metadata={"help": "Whisper: language of the speech ('hindi' or 'hi'), set as prefix token and for generation."},
    )
    task: str = field(
        default="transcribe",
        metadata={"help": "Whisper: 'transcribe', or 'translate' to English.", "choices": ["transcribe", "translate"]},
    )
    eval_metrics: list[str] = field(default_factory=lambda: ["wer", "cer"], metadata={"help": METRICS_HELP})
    pack_utterances: bool = field(
        default=False,
        metadata={
            "help": "Whisper: train on 30 s windows packed with several short utterances (audio joined with short "
            "pauses, transcripts joined), as Whisper's own training segments, instead of one clip padded to 30 s."
        },
    )

    def __post_init__(self) -> None:
        check_metric_names(self.eval_metrics)


TASKS = ("transcribe", "translate")


SCRIPT = "run_speech_recognition_seq2seq.py"
"""The entry script (in scripts/) this module's steps serve; its recipes live in configs/<this module's name>/."""
ARGUMENTS: tuple[type, ...] = (Seq2SeqModelArguments, Seq2SeqDataArguments, BatchingArguments, StreamingArguments)
"""The script's own argument groups, before the TrainingArguments of the backend."""
TRAINER: str | None = "seq2seq_trainer"
"""Which Trainer runs it: "trainer", "seq2seq_trainer", or None (its own Accelerate loop)."""


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
    (:func:`asr_finetune.modeling.weights_dtype`); transformers 5.x would otherwise keep an fp16 checkpoint in fp16.
    """
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


# ---------------------------------------------------------------------------------------------- data


def drop_longer_than_window(dataset: datasets.Dataset, feature_extractor: Any, drops: DropCounts) -> datasets.Dataset:
    """Whisper pads or cuts every clip to 30 s: a longer clip would be trained on with the end cut off."""
    window = input_window_seconds(feature_extractor)
    if window is None:
        return dataset
    keep = [duration <= window for duration in dataset["duration"]]
    return drop_rows(dataset, keep, f"longer than the model's {window:g} s input window", drops)


def add_labels(
    dataset: datasets.Dataset,
    tokenizer: Any,
    model: PreTrainedModel,
    drops: DropCounts,
    long_form_after: float | None = None,
) -> datasets.Dataset:
    """Add ``labels`` (token ids with the tokenizer's prefix and end tokens) and drop those the decoder cannot take.

    The leading decoder-start token, which the collator strips, does not count towards the limit. Clips longer
    than ``long_form_after`` seconds (evaluation with long-form generation) are kept whatever their label length:
    no loss is computed for them.
    """
    labels = tokenizer(list(dataset["text"])).input_ids
    dataset = dataset.add_column("labels", labels)
    limit = decoder_max_positions(model.config)
    if limit is None:
        return dataset
    start = decoder_start_token_id(model)
    lengths = [len(seq) - (1 if seq and seq[0] == start else 0) for seq in labels]
    after = long_form_after if long_form_after is not None else float("inf")
    keep = [n <= limit or d > after for n, d in zip(lengths, dataset["duration"], strict=True)]
    return drop_rows(dataset, keep, f"transcripts longer than the decoder's {limit} positions", drops)


def drop_too_short_for_masking(
    dataset: datasets.Dataset, model: PreTrainedModel, sampling_rate: int, drops: DropCounts
) -> datasets.Dataset:
    """Clips shorter than one SpecAugment time mask crash a wav2vec2-like encoder mid-training: drop them."""
    encoder_config = _encoder_config(model.config)
    if is_whisper(model.config) or not getattr(encoder_config, "apply_spec_augment", False):
        return dataset
    mask_length = getattr(encoder_config, "mask_time_length", 0)
    if not (getattr(encoder_config, "mask_time_prob", 0) > 0 and mask_length):
        return dataset
    samples = [round(d * sampling_rate) for d in dataset["duration"]]
    frames = encoder_frames(encoder_config, samples, add_adapter=False).tolist()
    return drop_too_short_for_masks(dataset, frames, mask_length, drops)


def unrepresentable_characters(texts: Sequence[str], labels: Sequence[Sequence[int]], tokenizer: Any) -> Counter:
    """Characters of the transcripts that do not survive tokenize -> decode (the tokenizer maps them to unknown)."""
    counts: Counter[str] = Counter()
    decoded = tokenizer.batch_decode([list(seq) for seq in labels], skip_special_tokens=True)
    for text, back in zip(texts, decoded, strict=True):
        if text != back.strip():
            counts.update(Counter(text) - Counter(back))
    counts.pop(" ", None)
    return counts


# ---------------------------------------------------------------------------------------------- metrics


class Seq2SeqMetrics(TranscriptMetrics):
    """``compute_metrics`` on generated ids: decoded without special tokens, normalised like the references."""

    empty_hint = "the model ends every sequence at once"

    def __init__(
        self,
        tokenizer: Any,
        references: Sequence[str],
        metrics: Sequence[str],
        normalizer: TextNormalizer,
        eval_normalizer: Any = None,
    ) -> None:
        super().__init__(references, metrics, eval_normalizer)
        self.tokenizer = tokenizer
        self.normalizer = normalizer

    def decode(self, ids: np.ndarray) -> list[str]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        texts = self.tokenizer.batch_decode(valid_ids(ids, pad), skip_special_tokens=True)
        return self.normalizer.batch(texts)


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


# ---------------------------------------------------------------------------------------------- script steps


def generate_for_metrics(training_args: Any, run_eval: bool) -> None:
    """WER/CER are computed on generated text: evaluation runs with --predict_with_generate (said in the log)."""
    if run_eval and not training_args.predict_with_generate:
        logger.warning("WER/CER need generated text: evaluating with --predict_with_generate.")
        training_args.predict_with_generate = True


def text_normalizer(data_args: Any) -> TextNormalizer:
    """Step 2: transcript normalisation (case as asked, in the transcripts' language)."""
    language = resolve_text_language(
        data_args.text_language,
        ("--language", data_args.language),
        ("--dataset_config_name", data_args.dataset_config_name),
    )
    return TextNormalizer(case="lower" if data_args.do_lower_case else "keep", language=language)


def prepare_model(run: Any, tokenizer: Any, model_name: str) -> tuple[PreTrainedModel, str | None]:
    """Step 3: the model with SpecAugment as asked, frozen parts, the joint CTC head, and the Whisper language/task
    prefix shared by labels and generation. Returns the model and its Whisper language code (None if not set)."""
    from .joint_ctc import attach_ctc_head

    model_args, data_args = run.model_args, run.data_args
    set_seed(run.training_args.seed)
    model = load_seq2seq_model(
        model_args.model_name_or_path, model_args.config_name, apply_spec_augment=model_args.apply_spec_augment,
        dtype=run.dtype, **run.pretrained,
    )
    freeze(model, feature_encoder=model_args.freeze_feature_encoder, encoder=model_args.freeze_encoder)
    if model_args.ctc_weight:
        attach_ctc_head(model, model_args.ctc_weight, tokenizer.all_special_ids, seed=run.training_args.seed)
    language = set_language_and_task(model, tokenizer, data_args.language, data_args.task, model_name)
    complete_generation_config(model, tokenizer)
    return model, language


def label_splits(
    splits: dict[str, Any], drops: dict[str, DropCounts], tokenizer: Any, model: PreTrainedModel,
    feature_extractor: Any,
) -> tuple[dict[str, Any], dict[str, Counter]]:
    """Step 4: labels the decoder can take on every split. Training drops clips longer than the input window and
    clips too short for SpecAugment; evaluation keeps long recordings (long-form generation decodes them).
    Also returns, per split, the characters the tokenizer cannot represent (logged)."""
    window = input_window_seconds(feature_extractor)

    def label(name: str, split: Any, split_drops: DropCounts) -> Any:
        if name == "train":
            split = drop_longer_than_window(split, feature_extractor, split_drops)
        split = add_labels(split, tokenizer, model, split_drops, long_form_after=window if name == "eval" else None)
        if name == "train":
            split = drop_too_short_for_masking(split, model, feature_extractor.sampling_rate, split_drops)
        return split

    labelled, unknown = {}, {}
    for name, split in splits.items():
        if is_stream(split):  # labelled block by block as it is read
            labelled[name], unknown[name] = split.then(functools.partial(label, name)), Counter()
            continue
        split = label(name, split, drops[name])
        unknown[name] = unrepresentable_characters(split["text"], split["labels"], tokenizer)
        if unknown[name]:
            logger.warning("%s text has characters the tokenizer cannot represent: %s", name, dict(unknown[name]))
        labelled[name] = split
    return labelled, unknown


def pack_for_training(
    splits: dict[str, Any], data_args: Any, tokenizer: Any, model: PreTrainedModel, feature_extractor: Any, seed: int
) -> dict[str, Any]:
    """Step 5 with ``--pack_utterances``: the train split as packs of utterances filling Whisper's window (a stream:
    each block packed as it is read)."""
    if not data_args.pack_utterances or "train" not in splits:
        return splits
    from .packing import check_window, pack_utterances

    window = input_window_seconds(feature_extractor)
    pack = functools.partial(
        pack_utterances, tokenizer=tokenizer, window=window, label_limit=decoder_max_positions(model.config),
        start_token=decoder_start_token_id(model), seed=seed,
    )  # fmt: skip
    train = splits["train"]
    if is_stream(train):
        check_window(window)  # at start, not at the first block
        return {**splits, "train": dataclasses.replace(train, pack=functools.partial(pack, log=False))}
    return {**splits, "train": pack(train)}


def publish_processor(feature_extractor: Any, tokenizer: Any, output_dir: str, is_main_process: bool) -> Any:
    """The processor the model is published with; its files are written by the main process."""
    processor = make_processor(feature_extractor, tokenizer)
    if is_main_process:
        save_processor(output_dir, processor, feature_extractor, tokenizer)
    return processor


def make_metrics(
    tokenizer: Any, splits: dict[str, Any], data_args: Any, normalizer: TextNormalizer, model: PreTrainedModel,
    language: str | None,
) -> Seq2SeqMetrics:
    """compute_metrics on generated text: orthographic WER/CER, and normalised (English for English Whisper)."""
    from .metrics import choose_eval_normalizer

    eval_normalizer = choose_eval_normalizer(
        data_args.eval_normalizer,
        default="english" if is_english(model, language) else "basic",
        english_spelling=getattr(tokenizer, "english_spelling_normalizer", None),
    )
    references = splits["eval"]["text"] if "eval" in splits else []
    return Seq2SeqMetrics(tokenizer, references, data_args.eval_metrics, normalizer, eval_normalizer)


def make_collator(feature_extractor: Any, model: PreTrainedModel) -> Any:
    from .batching import Seq2SeqCollator

    return Seq2SeqCollator(
        feature_extractor,
        decoder_start_token_id=decoder_start_token_id(model),
        input_seconds=input_window_seconds(feature_extractor),
    )
