"""Command-line arguments: dataclass groups shared by the entry scripts, and legacy-flag translation.

A single ``.json`` argument stands for all flags, as in the Hugging Face example scripts.
Flags that the published recipes pass but the installed transformers no longer knows are
translated here, in one table, with one log line each.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

logger = logging.getLogger(__name__)

FRESH_START = "false"
"""``--resume_from_checkpoint false``: ignore checkpoints in output_dir and start from the model."""


@dataclass
class DataArguments:
    """Where the data is and how to read it; shared by every entry script."""

    dataset_name: str = field(
        metadata={"help": "Hub dataset id, a local audiofolder directory, or a CSV/JSON/JSONL manifest (or a dir of them)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_split_name: str = field(
        default="train+validation", metadata={"help": "Training split expression, e.g. 'train+validation', 'train[:100]'."}
    )
    eval_split_name: str = field(default="test", metadata={"help": "Evaluation split expression."})
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio (path or audio)."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding the transcript."})
    id_column_name: str = field(
        default="id", metadata={"help": "Column naming each utterance in reports (falls back to the audio path)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached preprocessing."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for header reads."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})
    max_duration_in_seconds: float = field(default=20.0, metadata={"help": "Drop longer utterances (counted)."})
    min_duration_in_seconds: float = field(default=0.0, metadata={"help": "Drop shorter utterances (counted)."})
    preprocessing_only: bool = field(
        default=False, metadata={"help": "Load, check and filter the data (and build the vocab), then stop."}
    )
    token: str | None = field(default=None, metadata={"help": "Hub token for private datasets/models."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow dataset/model code from the Hub."})
    on_bad_row: str = field(
        default="error",
        metadata={
            "help": "Unreadable/empty audio or empty transcript: 'error' stops at start listing the rows; "
            "'skip' drops and counts them.",
            "choices": ["error", "skip"],
        },
    )


@dataclass
class CTCDataArguments(DataArguments):
    """Data, text and vocabulary options of run_speech_recognition_ctc.py."""

    chars_to_ignore: list[str] | None = field(
        default=None, metadata={"help": "Characters removed from transcripts, e.g. --chars_to_ignore , ? . ! - \\; \\:"}
    )
    eval_metrics: list[str] = field(default_factory=lambda: ["wer"], metadata={"help": "Any of: wer cer."})
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


@dataclass
class CTCModelArguments:
    """Model options of run_speech_recognition_ctc.py."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local directory of a pretrained encoder or CTC model."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config (Hub id, dir or config.json) to train from scratch, without weights."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Use this tokenizer instead of building a vocab from the training text."}
    )
    new_vocab: bool = field(
        default=False, metadata={"help": "Build a vocab from the data even if the model dir carries a tokenizer."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
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

    def __post_init__(self) -> None:
        if not self.model_name_or_path and not self.config_name:
            raise ValueError("Pass --model_name_or_path (pretrained) or --config_name (train from scratch).")

    def config_overrides(self) -> dict[str, Any]:
        names = (
            "attention_dropout activation_dropout feat_proj_dropout hidden_dropout final_dropout mask_time_prob "
            "mask_time_length mask_feature_prob mask_feature_length layerdrop ctc_loss_reduction ctc_zero_infinity "
            "add_adapter"
        ).split()
        return {name: getattr(self, name) for name in names}


# ---------------------------------------------------------------------------------------------- legacy flags


@dataclass(frozen=True)
class LegacyFlag:
    """A flag the recipes pass that the installed TrainingArguments no longer has."""

    old: str
    gone_field: str
    translate: Callable[[Any], dict[str, Any]]
    message: str
    is_switch: bool = False


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "on")
    return bool(value)


LEGACY_FLAGS = (
    LegacyFlag(
        "evaluation_strategy",
        "evaluation_strategy",
        lambda v: {"eval_strategy": v},
        "--evaluation_strategy is --eval_strategy in this transformers; using --eval_strategy {value}.",
    ),
    LegacyFlag(
        "group_by_length",
        "group_by_length",
        lambda v: {"train_sampling_strategy": "group_by_length"} if _truthy(v) else {},
        "--group_by_length is --train_sampling_strategy group_by_length in this transformers; batches are "
        "grouped by audio duration read from file headers.",
        is_switch=True,
    ),
    LegacyFlag(
        "overwrite_output_dir",
        "overwrite_output_dir",
        lambda v: {"resume_from_checkpoint": FRESH_START} if _truthy(v) else {},
        "--overwrite_output_dir: starting fresh from the model instead of resuming from checkpoints in output_dir "
        "(same as --resume_from_checkpoint false).",
        is_switch=True,
    ),
    LegacyFlag(
        "no_cuda",
        "no_cuda",
        lambda v: {"use_cpu": v} if _truthy(v) else {},
        "--no_cuda is --use_cpu in this transformers; using --use_cpu.",
        is_switch=True,
    ),
)


def _active_legacy_flags(training_fields: set[str]) -> dict[str, LegacyFlag]:
    return {flag.old: flag for flag in LEGACY_FLAGS if flag.gone_field not in training_fields}


def translate_legacy_dict(config: dict[str, Any], training_fields: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Rewrite legacy keys of a JSON config; returns the new dict and one note per translation."""
    active = _active_legacy_flags(training_fields)
    out: dict[str, Any] = {}
    notes = []
    for key, value in config.items():
        flag = active.get(key)
        if flag is None:
            out[key] = value
            continue
        out.update(flag.translate(value))
        notes.append(flag.message.format(value=value))
    return out, notes


def translate_legacy_argv(argv: Sequence[str], training_fields: set[str]) -> tuple[list[str], list[str]]:
    """Rewrite legacy flags of a command line; returns the new argv and one note per translation."""
    active = _active_legacy_flags(training_fields)
    out: list[str] = []
    notes = []
    index = 0
    while index < len(argv):
        token = argv[index]
        name, has_value, inline = token.partition("=")
        flag = active.get(name[2:]) if name.startswith("--") else None
        if flag is None:
            out.append(token)
            index += 1
            continue
        if has_value:
            value: Any = inline
            index += 1
        elif flag.is_switch:
            following = argv[index + 1] if index + 1 < len(argv) else ""
            is_bool = following.lower() in ("true", "false", "1", "0", "yes", "no")
            value = following if is_bool else True
            index += 2 if is_bool else 1
        else:
            value = argv[index + 1] if index + 1 < len(argv) else ""
            index += 2
        for key, new_value in flag.translate(value).items():
            out += [f"--{key}", str(new_value)]
        notes.append(flag.message.format(value=value))
    return out, notes


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parse a command line (or one .json file) into the given dataclasses, translating legacy flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    training_fields = {f.name for cls in dataclass_types if dataclasses.is_dataclass(cls) for f in dataclasses.fields(cls)}
    parser = HfArgumentParser(list(dataclass_types))
    if len(argv) == 1 and argv[0].endswith(".json"):
        config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        config, notes = translate_legacy_dict(config, training_fields)
        _log_notes(notes)
        return tuple(parser.parse_dict(config))
    argv, notes = translate_legacy_argv(argv, training_fields)
    _log_notes(notes)
    return tuple(parser.parse_args_into_dataclasses(args=argv))


def _log_notes(notes: list[str]) -> None:
    for note in dict.fromkeys(notes):
        logger.warning(note)
