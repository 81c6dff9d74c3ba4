"""The CTC task (run_speech_recognition_ctc.py): its flags, choosing or building the tokenizer, the model with a
head that fits it, labels that CTC can fit, and metrics. Evaluation's frame-exact decoding is
:mod:`asr_finetune.training.eval_steps`'s."""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor, set_seed

from asr_finetune.data.arguments import DataArguments
from asr_finetune.data.loading import drop_rows, drop_too_short_for_masks
from asr_finetune.data.report import DropCounts, recorded_vocab_source
from asr_finetune.data.sampling import BatchingArguments
from asr_finetune.data.streaming import StreamingArguments, is_stream
from asr_finetune.data.text import TextNormalizer, infer_case, resolve_text_language
from asr_finetune.data.vocab import VOCAB_FILE, build_vocab, format_missing, missing_characters, save_vocab
from asr_finetune.errors import DataError, UsageError
from asr_finetune.evaluation.lm_decoding import LanguageModelArguments
from asr_finetune.evaluation.metrics import (
    METRICS_HELP,
    TranscriptMetrics,
    check_metric_names,
    choose_eval_normalizer,
    valid_ids,
)
from asr_finetune.models.adapters import AdapterArguments, add_lora
from asr_finetune.models.loading import (
    ModelArguments,
    find_tokenizer,
    load_ctc_model,
    output_frames,
    use_mean_loss,
)
from asr_finetune.tasks.task import Task
from asr_finetune.training.early_stopping import StoppingArguments
from asr_finetune.training.outputs import publish_processor_files

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- arguments


@dataclass
class CTCDataArguments(DataArguments):
    """Data, text and vocabulary options of run_speech_recognition_ctc.py."""

    _argument_group_name = "Data and text (CTC)"

    chars_to_ignore: list[str] | None = field(
        default=None, metadata={"help": "Characters removed from transcripts, e.g. --chars_to_ignore , ? . ! - \\; \\:"}
    )
    eval_metrics: list[str] = field(default_factory=lambda: ["wer"], metadata={"help": METRICS_HELP})
    do_lower_case: bool = field(
        default=True,
        metadata={"help": "Lower-case text for a new vocab. A tokenizer brought along keeps its own case convention."},
    )
    unk_token: str = field(default="[UNK]", metadata={"help": "Unknown token of a new vocab."})
    pad_token: str = field(default="[PAD]", metadata={"help": "Padding token of a new vocab (the CTC blank)."})
    word_delimiter_token: str = field(default="|", metadata={"help": "Stands for the space in a new vocab."})
    phoneme_language: str | None = field(
        default=None, metadata={"help": "Transcribe text to phonemes with espeak (e.g. 'tr', 'en-us')."}
    )

    def __post_init__(self) -> None:
        check_metric_names(self.eval_metrics)


@dataclass
class CTCModelArguments(ModelArguments):
    """Model options of run_speech_recognition_ctc.py."""

    _argument_group_name = "Model (CTC)"

    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this tokenizer instead of building a vocab from the training text."}
    )
    new_vocab: bool = field(
        default=False, metadata={"help": "Build a vocab from the data even if the model dir carries a tokenizer."}
    )
    freeze_feature_encoder: bool = field(default=True, metadata={"help": "Do not train the convolutional front end."})
    attention_dropout: float = field(default=0.0, metadata={"help": "Dropout on attention probabilities."})
    activation_dropout: float = field(default=0.0, metadata={"help": "Dropout inside the feed-forward layers."})
    feat_proj_dropout: float = field(default=0.0, metadata={"help": "Dropout after the feature projection."})
    hidden_dropout: float = field(default=0.0, metadata={"help": "Dropout on hidden states."})
    final_dropout: float = field(default=0.0, metadata={"help": "Dropout before the CTC head."})
    mask_time_prob: float = field(default=0.05, metadata={"help": "SpecAugment: share of frames masked in time."})
    mask_time_length: int = field(default=10, metadata={"help": "SpecAugment: frames per time mask."})
    mask_feature_prob: float = field(default=0.0, metadata={"help": "SpecAugment: share of feature channels masked."})
    mask_feature_length: int = field(default=10, metadata={"help": "SpecAugment: channels per feature mask."})
    layerdrop: float = field(default=0.0, metadata={"help": "Probability of skipping a transformer layer."})
    ctc_loss_reduction: str = field(default="mean", metadata={"help": "'mean' or 'sum'.", "choices": ["mean", "sum"]})
    ctc_zero_infinity: bool = field(default=False, metadata={"help": "Zero infinite CTC losses instead of failing."})
    add_adapter: bool = field(default=False, metadata={"help": "Add an adapter on top of the encoder."})
    def config_overrides(self) -> dict[str, Any]:
        names = (
            "attention_dropout activation_dropout feat_proj_dropout hidden_dropout final_dropout mask_time_prob "
            "mask_time_length mask_feature_prob mask_feature_length layerdrop ctc_loss_reduction ctc_zero_infinity "
            "add_adapter"
        ).split()
        return {name: getattr(self, name) for name in names}


def normalizer_for(
    tokenizer: Any | None,
    chars_to_ignore: Sequence[str] | None,
    do_lower_case: bool,
    phoneme_language: str | None,
    language: str | None = None,
) -> TextNormalizer:
    """Text normalisation that matches the tokenizer: a brought tokenizer's case convention wins."""
    if tokenizer is not None:
        case = infer_case(tokenizer.get_vocab())
        logger.info("Transcripts follow the tokenizer's case convention: %s.", case)
    else:
        case = "lower" if do_lower_case else "keep"
    return TextNormalizer(chars_to_ignore, case=case, phoneme_language=phoneme_language, language=language)


def build_tokenizer(
    train_texts: Sequence[str],
    output_dir: str | Path,
    *,
    unk_token: str,
    pad_token: str,
    word_delimiter_token: str,
    write: bool = True,
) -> Wav2Vec2CTCTokenizer:
    """The vocab of the training text as a tokenizer; vocab.json is written to ``output_dir`` where ``write``.

    Every process builds the same vocab from the same text, so none waits for (or needs to see) another's file:
    nodes need not share a file system.
    """
    vocab = build_vocab(train_texts, word_delimiter_token, unk_token, pad_token)
    with tempfile.TemporaryDirectory() as scratch:
        directory = output_dir if write else scratch
        save_vocab(vocab, Path(directory) / VOCAB_FILE)
        if write:
            logger.info("Built a %d-token vocab from the training text: %s", len(vocab), Path(directory) / VOCAB_FILE)
        return load_vocab_tokenizer(
            directory, unk_token=unk_token, pad_token=pad_token, word_delimiter_token=word_delimiter_token
        )


def load_vocab_tokenizer(
    directory: str | Path, *, unk_token: str, pad_token: str, word_delimiter_token: str
) -> Wav2Vec2CTCTokenizer:
    return Wav2Vec2CTCTokenizer(
        str(Path(directory) / VOCAB_FILE),
        unk_token=unk_token,
        pad_token=pad_token,
        word_delimiter_token=word_delimiter_token,
        bos_token=None,
        eos_token=None,
    )


def add_labels(
    dataset: datasets.Dataset,
    tokenizer: Any,
    model: Any,
    sampling_rate: int,
    drops: DropCounts,
    min_frames: int = 0,
) -> datasets.Dataset:
    """Add ``labels`` and drop utterances CTC cannot fit: more labels (plus the blanks repeats need) than frames.

    ``min_frames`` also drops clips too short for SpecAugment's time masks, which would fail mid-training.
    """
    labels = tokenizer(list(dataset["text"])).input_ids
    frames = output_frames(model, [round(d * sampling_rate) for d in dataset["duration"]])
    needed = [len(seq) + sum(1 for a, b in zip(seq, seq[1:], strict=False) if a == b) for seq in labels]
    dataset = dataset.add_column("labels", labels)
    dataset = drop_rows(
        dataset,
        [need <= have for need, have in zip(needed, frames, strict=True)],
        "transcripts longer than the model's output frames (CTC cannot fit them)",
        drops,
    )
    if min_frames:
        frames = output_frames(model, [round(d * sampling_rate) for d in dataset["duration"]])
        dataset = drop_too_short_for_masks(dataset, frames, min_frames, drops)
    return dataset


def argmax_logits(logits: Any, labels: Any) -> Any:
    """Keep only the best token per frame during evaluation instead of every logit (memory)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


class CTCMetrics(TranscriptMetrics):
    """``compute_metrics`` for the Trainer on argmax ids; keeps the decoded hypotheses of the last evaluation."""

    empty_hint = "the model emits only blanks"

    def __init__(
        self, tokenizer: Any, references: Sequence[str], metrics: Sequence[str], eval_normalizer: Any = None
    ) -> None:
        super().__init__(references, metrics, eval_normalizer)
        self.tokenizer = tokenizer

    def decode(self, ids: np.ndarray) -> list[str]:
        return self.tokenizer.batch_decode(valid_ids(ids, self.tokenizer.pad_token_id))


def existing_tokenizer(
    model_args: Any, data_args: Any, output_dir: str, resume: str | None, pretrained: dict[str, Any]
) -> tuple[Any | None, str]:
    """The tokenizer a run must reuse, and where it came from; (None, "") when a vocab should be built.

    Order: --tokenizer_name_or_path; the one saved in output_dir when resuming (unchanged on resume);
    the one the model dir carries (unless --new_vocab).
    """
    if model_args.tokenizer_name_or_path:
        tokenizer = find_tokenizer(model_args.tokenizer_name_or_path, **pretrained)
        if tokenizer is None:
            raise UsageError(f"--tokenizer_name_or_path {model_args.tokenizer_name_or_path}: no tokenizer found there.")
        return tokenizer, f"from {model_args.tokenizer_name_or_path}"
    if resume:
        tokenizer = find_tokenizer(output_dir)
        if tokenizer is not None:  # described as when it was made, so the reports a rerun rewrites stay the same
            return tokenizer, recorded_vocab_source(output_dir) or f"reused from {output_dir} (resuming)"
    if not model_args.new_vocab:
        tokenizer = find_tokenizer(model_args.model_name_or_path, **pretrained)
        if tokenizer is not None:
            logger.info(
                "Using the tokenizer that comes with %s; pass --new_vocab to build one from the data.",
                model_args.model_name_or_path,
            )
            return tokenizer, f"carried by {model_args.model_name_or_path}"
    return None, ""


CTC = Task(
    name="ctc",
    script="run_speech_recognition_ctc.py",
    command="asr-finetune-ctc",
    arguments=(CTCModelArguments, CTCDataArguments, BatchingArguments, StreamingArguments, StoppingArguments,
               AdapterArguments, LanguageModelArguments),
    trainer="trainer",
)


# ---------------------------------------------------------------------------------------------- script steps


def text_normalizer(tokenizer: Any | None, data_args: Any) -> TextNormalizer:
    """Step 2: transcript normalisation for ``data_args`` (CTCDataArguments), in the transcripts' language."""
    language = resolve_text_language(
        data_args.text_language,
        ("--dataset_config_name", data_args.dataset_config_name),
        ("--phoneme_language", data_args.phoneme_language),
    )
    return normalizer_for(
        tokenizer, data_args.chars_to_ignore, data_args.do_lower_case, data_args.phoneme_language, language
    )


def ensure_tokenizer(
    tokenizer: Any | None, source: str, splits: dict[str, Any], data_args: Any, training_args: Any
) -> tuple[Any, str, dict[str, Any]]:
    """Step 4: the tokenizer (built from the training text when none was brought; the main process writes
    vocab.json), where it came from, and per split the characters its vocab lacks (logged)."""
    texts = {name: split.texts() if is_stream(split) else split["text"] for name, split in splits.items()}
    if tokenizer is None:
        if "train" not in splits:
            raise DataError("Evaluation alone needs a tokenizer: pass --tokenizer_name_or_path or a fine-tuned model.")
        if is_stream(splits["train"]) and not texts["train"]:
            raise UsageError("--streaming needs a tokenizer: pass --tokenizer_name_or_path (as the reference streaming "
                             "script does), or --vocab_from_first_n N to build the vocab from the first N rows.")
        tokenizer = build_tokenizer(
            texts["train"],
            training_args.output_dir,
            unk_token=data_args.unk_token,
            pad_token=data_args.pad_token,
            word_delimiter_token=data_args.word_delimiter_token,
            write=training_args.process_index == 0,
        )
        source = f"built from {data_args.train_split_name}"
        if is_stream(splits["train"]):
            source += f" (its first {len(texts['train'])} rows, --vocab_from_first_n)"
            logger.warning("Vocab %s: characters that first appear later in the stream become %s.", source,
                           data_args.unk_token)
    unknown = {
        name: missing_characters(split_texts, tokenizer.get_vocab(), data_args.word_delimiter_token)
        for name, split_texts in texts.items()
    }
    for name, counts in unknown.items():
        if counts:
            logger.warning("%s text has %d character(s) the vocab lacks (they become %s): %s", name,
                           sum(counts.values()), tokenizer.unk_token, format_missing(counts))
    return tokenizer, source, unknown


def prepare_model(run: Any, tokenizer: Any) -> Any:
    """Step 5: the CTC model with a head that matches the tokenizer, per-batch mean loss, front end frozen as asked."""
    model_args = run.model_args
    set_seed(run.training_args.seed)
    model = load_ctc_model(
        model_args.model_name_or_path, model_args.config_name, model_args.config_overrides(), tokenizer,
        dtype=run.dtype, **run.pretrained,
    )
    use_mean_loss(model)
    if model_args.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    adapters = run.group(AdapterArguments)
    if adapters.use_peft:  # the head is new (sized to the vocab): it trains in full
        model = add_lora(model, adapters, trained_in_full=("lm_head",))
    return model


def label_splits(
    splits: dict[str, Any], drops: dict[str, DropCounts], tokenizer: Any, model: Any, sampling_rate: int,
    model_args: Any,
) -> dict[str, Any]:
    """Step 5: labels on every split; training clips too short for SpecAugment's time masks are dropped too."""
    masking = model_args.mask_time_length if model_args.mask_time_prob > 0 else 0

    def label(name: str, split: Any, split_drops: DropCounts) -> Any:
        return add_labels(split, tokenizer, model, sampling_rate, split_drops, masking if name == "train" else 0)

    return {
        name: split.then(functools.partial(label, name)) if is_stream(split) else label(name, split, drops[name])
        for name, split in splits.items()
    }


def save_processor(
    feature_extractor: Any, tokenizer: Any, output_dir: str, is_main_process: bool, resuming: bool = False
) -> Any:
    """The processor (feature extractor + tokenizer) the model is published with; written by the main process (a
    resumed run keeps the files it started with)."""
    processor = Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    def write(folder: Path) -> None:
        processor.save_pretrained(str(folder))
        feature_extractor.save_pretrained(str(folder))  # preprocessor_config.json, for 4.x readers

    if is_main_process:
        publish_processor_files(write, output_dir, keep_existing=resuming)
    return processor


def make_metrics(tokenizer: Any, splits: dict[str, Any], data_args: Any) -> CTCMetrics:
    """compute_metrics for the Trainer: WER/CER as asked, orthographic and normalised (phonemes: orthographic)."""
    normalizer = choose_eval_normalizer(data_args.eval_normalizer,
                                        default="none" if data_args.phoneme_language else "basic")
    references = splits["eval"]["text"] if "eval" in splits else []
    return CTCMetrics(tokenizer, references, data_args.eval_metrics, normalizer)
