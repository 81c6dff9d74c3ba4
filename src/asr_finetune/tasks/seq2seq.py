"""The seq2seq task (run_speech_recognition_seq2seq.py): its flags, the model prepared for training (SpecAugment,
frozen parts, joint CTC head, Whisper's prefix), labels that fit the decoder, packing, and metrics from generated
text. Model loading itself is :mod:`asr_finetune.models.seq2seq`'s."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from transformers import (
    PreTrainedModel,
    set_seed,
)

from asr_finetune.data.arguments import DataArguments
from asr_finetune.data.collators import Seq2SeqCollator
from asr_finetune.data.loading import drop_rows, drop_too_short_for_masks
from asr_finetune.data.packing import check_window, pack_utterances
from asr_finetune.data.report import DropCounts
from asr_finetune.data.sampling import BatchingArguments
from asr_finetune.data.streaming import StreamingArguments, is_stream
from asr_finetune.data.text import TextNormalizer, resolve_text_language
from asr_finetune.evaluation.decoding import record_decoding
from asr_finetune.evaluation.metrics import (
    METRICS_HELP,
    TranscriptMetrics,
    check_metric_names,
    choose_eval_normalizer,
    valid_ids,
)
from asr_finetune.models.adapters import AdapterArguments, add_lora
from asr_finetune.models.joint_ctc import HEAD as CTC_HEAD
from asr_finetune.models.joint_ctc import attach_ctc_head, check_ctc_weight
from asr_finetune.models.loading import (
    ModelArguments,
    encoder_frames,
)
from asr_finetune.models.seq2seq import (
    _encoder_config,
    complete_generation_config,
    decoder_max_positions,
    decoder_start_token_id,
    freeze,
    input_window_seconds,
    is_english,
    is_whisper,
    load_seq2seq_model,
    make_processor,
    save_processor,
    set_language_and_task,
)
from asr_finetune.tasks.task import Task
from asr_finetune.training.early_stopping import StoppingArguments
from asr_finetune.training.outputs import publish_processor_files

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- arguments


@dataclass
class Seq2SeqModelArguments(ModelArguments):
    """Model options of run_speech_recognition_seq2seq.py."""

    _argument_group_name = "Model (seq2seq: Whisper, warm-started encoder-decoders)"

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
        check_ctc_weight(self.ctc_weight)
        super().__post_init__()


@dataclass
class Seq2SeqDataArguments(DataArguments):
    """Data and text options of run_speech_recognition_seq2seq.py."""

    _argument_group_name = "Data and text (seq2seq)"

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
        self.outputs = [text.strip() for text in texts]  # the model's own text, as asr-transcribe gives it
        return self.normalizer.batch(texts)


SEQ2SEQ = Task(
    name="seq2seq",
    script="run_speech_recognition_seq2seq.py",
    command="asr-finetune-seq2seq",
    arguments=(Seq2SeqModelArguments, Seq2SeqDataArguments, BatchingArguments, StreamingArguments,
               StoppingArguments, AdapterArguments),
    trainer="seq2seq",
)


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
    prefix shared by labels and generation, and the beams evaluation decodes with recorded in its generation config.
    Returns the model and its Whisper language code (None if not set)."""

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
    record_decoding(model, run.training_args.generation_num_beams)
    adapters = run.group(AdapterArguments)
    if adapters.use_peft:  # a joint CTC head is new: it trains in full
        model = add_lora(model, adapters, trained_in_full=(CTC_HEAD,) if model_args.ctc_weight else ())
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


def publish_processor(
    feature_extractor: Any, tokenizer: Any, output_dir: str, is_main_process: bool, resuming: bool = False
) -> Any:
    """The processor the model is published with; its files are written by the main process (a resumed run keeps
    the files it started with)."""
    processor = make_processor(feature_extractor, tokenizer)
    if is_main_process:
        publish_processor_files(lambda folder: save_processor(folder, processor, feature_extractor, tokenizer),
                                output_dir, keep_existing=resuming)  # fmt: skip
    return processor


def make_metrics(
    tokenizer: Any, splits: dict[str, Any], data_args: Any, normalizer: TextNormalizer, model: PreTrainedModel,
    language: str | None,
) -> Seq2SeqMetrics:
    """compute_metrics on generated text: orthographic WER/CER, and normalised (English for English Whisper)."""

    eval_normalizer = choose_eval_normalizer(
        data_args.eval_normalizer,
        default="english" if is_english(model, language) else "basic",
        english_spelling=getattr(tokenizer, "english_spelling_normalizer", None),
    )
    references = splits["eval"]["text"] if "eval" in splits else []
    return Seq2SeqMetrics(tokenizer, references, data_args.eval_metrics, normalizer, eval_normalizer)


def pipeline_kwargs(model: PreTrainedModel) -> str:
    """What a ``pipeline()`` call needs to decode as evaluation did: with one beam, say so (the ASR pipeline's own
    default is 5 beams, and one beam cannot be saved in a generation config)."""
    return ', generate_kwargs={"num_beams": 1}' if (model.generation_config.num_beams or 1) == 1 else ""


def make_collator(feature_extractor: Any, model: PreTrainedModel) -> Any:
    return Seq2SeqCollator(
        feature_extractor,
        decoder_start_token_id=decoder_start_token_id(model),
        input_seconds=input_window_seconds(feature_extractor),
    )
