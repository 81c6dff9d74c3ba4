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

from .batching import BatchingArguments  # noqa: F401  (declared beside the sampler it configures; parsed with these)
from .errors import UsageError
from .metrics import METRICS_HELP, check_metric_names

logger = logging.getLogger(__name__)

RECIPE_KEY = "_recipe"
"""Key of a config file that describes the recipe (published figures, launcher); not a flag."""

FRESH_START = "false"
"""``--resume_from_checkpoint false``: ignore checkpoints in output_dir and start from the model."""


@dataclass
class DataArguments:
    """Where the data is and how to read it; shared by every entry script."""

    dataset_name: str = field(
        metadata={"help": "Hub dataset id, a local audiofolder dir, or a CSV/JSON/JSONL manifest (or a dir of them)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_split_name: str = field(
        default="train+validation", metadata={"help": "Training split, e.g. 'train+validation', 'train[:100]'."}
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
            "help": "Unreadable/empty/non-finite audio or empty transcript: 'error' stops (at start, or in the "
            "loader naming the row); 'skip' drops and counts them.",
            "choices": ["error", "skip"],
        },
    )
    on_nonfinite_loss: str = field(
        default="stop",
        metadata={
            "help": "A training step whose loss or gradients are NaN/inf: 'stop' the run naming the step and its "
            "clips; 'skip' the step (weights untouched, counted).",
            "choices": ["stop", "skip"],
        },
    )
    audio_check: str = field(
        default="tail",
        metadata={
            "help": "How much of each file the start-up check reads: 'header'; 'tail' (header + last frames: "
            "catches truncated files); 'full' (decodes everything: also catches NaN/inf samples).",
            "choices": ["header", "tail", "full"],
        },
    )
    text_language: str | None = field(
        default=None,
        metadata={
            "help": "Language of the transcripts (e.g. 'tr'), for language-aware lower-casing (Turkish/Azeri "
            "dotted and dotless i). Default: --dataset_config_name or --phoneme_language when a language code."
        },
    )
    eval_normalizer: str | None = field(
        default=None,
        metadata={
            "help": "Also report eval_normalized_wer/cer after Whisper's text normaliser: 'english' (numbers, "
            "spellings, punctuation, fillers), 'basic' (case, punctuation, symbols) or 'none'. Default: english "
            "for English Whisper runs, none for phoneme runs, basic otherwise.",
            "choices": ["english", "basic", "none"],
        },
    )


@dataclass
class CTCDataArguments(DataArguments):
    """Data, text and vocabulary options of run_speech_recognition_ctc.py."""

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
    torch_dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype to load the weights in. Default float32 (always, when training: mixed precision is "
            "--fp16/--bf16); float16, bfloat16 or auto (the checkpoint's) for evaluation-only runs.",
            "choices": ["auto", "float32", "float16", "bfloat16"],
        },
    )

    def __post_init__(self) -> None:
        require_model_or_config(self.model_name_or_path, self.config_name)

    def config_overrides(self) -> dict[str, Any]:
        names = (
            "attention_dropout activation_dropout feat_proj_dropout hidden_dropout final_dropout mask_time_prob "
            "mask_time_length mask_feature_prob mask_feature_length layerdrop ctc_loss_reduction ctc_zero_infinity "
            "add_adapter"
        ).split()
        return {name: getattr(self, name) for name in names}


# ---------------------------------------------------------------------------------------------- legacy flags


def require_model_or_config(model_name_or_path: str | None, config_name: str | None) -> None:
    if not model_name_or_path and not config_name:
        raise UsageError("Pass --model_name_or_path (pretrained) or --config_name (train from scratch).")


@dataclass(frozen=True)
class LegacyFlag:
    """A flag the recipes pass that the installed TrainingArguments no longer has (or, with ``always``, one whose
    meaning we replace on every transformers version)."""

    old: str
    gone_field: str
    translate: Callable[[Any], dict[str, Any]]
    message: str
    is_switch: bool = False
    always: bool = False


TRUE_WORDS = ("true", "yes", "t", "y", "1")
FALSE_WORDS = ("false", "no", "f", "n", "0")
"""The words HfArgumentParser takes for a boolean flag's value; every boolean we read follows them."""


def is_bool_word(text: str) -> bool:
    return text.strip().lower() in TRUE_WORDS + FALSE_WORDS


def parse_bool(value: Any) -> bool:
    """A flag value as a boolean: ``True`` (a bare switch) or one of :data:`TRUE_WORDS`."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


@dataclass
class CommandLine:
    """A command line, read once: the flags as typed, or the contents of the single ``.json`` file that stands for
    them. Both the backend choice and the parser read it from here."""

    argv: list[str]
    config: dict[str, Any] | None = None

    @classmethod
    def read(cls, argv: Sequence[str] | None = None) -> CommandLine:
        argv = list(sys.argv[1:] if argv is None else argv)
        if len(argv) == 1 and argv[0].endswith(".json"):
            return cls(argv, read_config_file(argv[0]))
        return cls(argv)

    def flags(self) -> dict[str, Any]:
        """Flag names and values; a bare switch is True."""
        if self.config is not None:
            return dict(self.config)
        flags: dict[str, Any] = {}
        for index, token in enumerate(self.argv):
            if token.startswith("--"):
                name, has_value, value = token[2:].partition("=")
                following = self.argv[index + 1] if index + 1 < len(self.argv) else None
                if has_value:
                    flags[name] = value
                elif following is not None and not following.startswith("--"):
                    flags[name] = following
                else:
                    flags[name] = True
        return flags

    def is_on(self, name: str) -> bool:
        return parse_bool(self.flags().get(name, False))


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
        lambda v: {"train_sampling_strategy": "group_by_length"} if parse_bool(v) else {},
        "--group_by_length is --train_sampling_strategy group_by_length in this transformers; batches are "
        "grouped by audio duration read from file headers.",
        is_switch=True,
    ),
    LegacyFlag(
        "overwrite_output_dir",
        "overwrite_output_dir",
        lambda v: {"resume_from_checkpoint": FRESH_START} if parse_bool(v) else {},
        "--overwrite_output_dir: starting fresh from the model instead of resuming from checkpoints in output_dir "
        "(same as --resume_from_checkpoint false).",
        is_switch=True,
        always=True,  # transformers 4.x has the field, but its Trainer would still resume from our checkpoints
    ),
    LegacyFlag(
        "no_cuda",
        "no_cuda",
        lambda v: {"use_cpu": v} if parse_bool(v) else {},
        "--no_cuda is --use_cpu in this transformers; using --use_cpu.",
        is_switch=True,
    ),
    LegacyFlag(
        "use_auth_token",
        "use_auth_token",
        lambda v: {},
        "--use_auth_token is not needed: the Hub login saved by `hf auth login` is used; pass --token to give another.",
        is_switch=True,
    ),
)


def _active_legacy_flags(training_fields: set[str]) -> dict[str, LegacyFlag]:
    return {flag.old: flag for flag in LEGACY_FLAGS if flag.always or flag.gone_field not in training_fields}


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
            is_bool = is_bool_word(following)
            value = following if is_bool else True
            index += 2 if is_bool else 1
        else:
            value = argv[index + 1] if index + 1 < len(argv) else ""
            index += 2
        for key, new_value in flag.translate(value).items():
            out += [f"--{key}", str(new_value)]
        notes.append(flag.message.format(value=value))
    return out, notes


def parse_args(
    dataclass_types: Sequence[type], argv: Sequence[str] | CommandLine | None = None
) -> tuple[Any, ...]:
    """Parse a command line (or one .json file) into the given dataclasses, translating legacy flags."""
    command = argv if isinstance(argv, CommandLine) else CommandLine.read(argv)
    argv = command.argv
    training_fields = {
        f.name for cls in dataclass_types if dataclasses.is_dataclass(cls) for f in dataclasses.fields(cls)
    }
    # No abbreviations: argparse would take --learning_rat for --learning_rate (and --do for whichever it likes).
    parser = HfArgumentParser(list(dataclass_types), allow_abbrev=False)
    try:
        if command.config is not None:
            config, notes = translate_legacy_dict(command.config, training_fields)
            _log_notes(notes)
            parsed = tuple(parser.parse_dict(config))
        else:
            argv, notes = translate_legacy_argv(argv, training_fields)
            _log_notes(notes)
            argv = _complete_bare_switches(argv, dataclass_types)
            parsed = tuple(parser.parse_args_into_dataclasses(args=argv))
    except UsageError:
        raise
    except ValueError as err:  # a dataclass's own check, or a value of the wrong type in a .json file
        raise UsageError(str(err)) from err
    for group in parsed:
        check_training_arguments(group)
    return parsed


def read_config_file(path: str) -> dict[str, Any]:
    """The flags of a ``.json`` config (its ``_recipe`` section removed); an error naming the file if unreadable."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"Cannot read the config file {path}: {err.strerror}.") from err
    except json.JSONDecodeError as err:
        raise UsageError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}.") from err
    if not isinstance(config, dict):
        raise UsageError(f"{path} must hold one JSON object of flag names and values.")
    config.pop(RECIPE_KEY, None)
    return config


def check_training_arguments(args: Any) -> None:
    """Refuse settings of (Trainer) TrainingArguments that would silently do something else than asked."""
    if not hasattr(args, "max_steps") or not hasattr(args, "fp16"):
        return
    if args.max_steps == 0 or args.max_steps < -1:
        raise UsageError(
            f"--max_steps {args.max_steps}: give a positive number of optimizer steps (or leave it out to train "
            "for --num_train_epochs)."
        )



def _complete_bare_switches(argv: list[str], dataclass_types: Sequence[type]) -> list[str]:
    """``--flag`` alone means ``--flag true`` also for ``bool | None = None`` fields (unset = "the model's own
    setting"), which HfArgumentParser would otherwise make demand a value."""
    names = {
        f"--{f.name}"
        for cls in dataclass_types
        if dataclasses.is_dataclass(cls)
        for f in dataclasses.fields(cls)
        if f.default is None and str(f.type).replace(" ", "") in ("bool|None", "Optional[bool]")
    }
    out: list[str] = []
    for index, token in enumerate(argv):
        out.append(token)
        following = argv[index + 1] if index + 1 < len(argv) else "--"
        if token in names and following.startswith("--"):
            out.append("true")
    return out


def _log_notes(notes: list[str]) -> None:
    for note in dict.fromkeys(notes):
        logger.warning(note)


# ---------------------------------------------------------------------------------------------- seq2seq


@dataclass
class Seq2SeqModelArguments:
    """Model options of run_speech_recognition_seq2seq.py."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local dir of a speech seq2seq model: Whisper, or a warm-started encoder-decoder "
            "made by scripts/create_speech_encoder_decoder.py."
        },
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config to use instead of the model's (alone: train from random weights)."}
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer dir or Hub id, if not the model's."})
    feature_extractor_name: str | None = field(
        default=None, metadata={"help": "Feature extractor dir or Hub id, if not the model's."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast (tokenizers-backed) tokenizer."})
    model_revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
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
    torch_dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype to load the weights in. Default float32 (always, when training: mixed precision is "
            "--fp16/--bf16); float16, bfloat16 or auto (the checkpoint's) for evaluation-only runs.",
            "choices": ["auto", "float32", "float16", "bfloat16"],
        },
    )

    def __post_init__(self) -> None:
        from .joint_ctc import check_ctc_weight

        check_ctc_weight(self.ctc_weight)
        require_model_or_config(self.model_name_or_path, self.config_name)


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

    def __post_init__(self) -> None:
        check_metric_names(self.eval_metrics)


# ---------------------------------------------------------------------------------------------- pretraining


@dataclass
class PretrainingArguments:
    """Flags of run_wav2vec2_pretraining_no_trainer.py: the reference script's, plus resume/precision/report extras."""

    dataset_name: str = field(
        metadata={"help": "Hub dataset id, a local audiofolder dir, or a CSV/JSON/JSONL manifest (or a dir of them)."}
    )
    output_dir: str = field(metadata={"help": "Where checkpoints and the pretrained model (+ feature extractor) go."})
    dataset_config_names: list[str] | None = field(
        default=None,
        metadata={"help": "Hub configs, one per --dataset_split_names entry (ignored for a local dataset)."},
    )
    dataset_split_names: list[str] = field(
        default_factory=lambda: ["train"],
        metadata={"help": "Splits (expressions such as 'train+validation', 'train[:90%%]'), concatenated."},
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for header reads."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached preprocessing."})
    preprocessing_only: bool = field(default=False, metadata={"help": "Load, check and filter the data, then stop."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are stored."})
    validation_split_percentage: int = field(
        default=1, metadata={"help": "Hold out this %% of the training rows (at least one) for a validation pass."}
    )
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio (path or audio)."})
    train_cache_file_name: str | None = field(
        default=None, metadata={"help": "Accepted for compatibility; nothing decoded is cached."}
    )
    validation_cache_file_name: str | None = field(
        default=None, metadata={"help": "Accepted for compatibility; nothing decoded is cached."}
    )
    on_bad_row: str = field(
        default="error",
        metadata={"help": "Unreadable/empty/non-finite audio: 'error' stops (at start, or in the loader naming the "
                  "row); 'skip' drops and counts.", "choices": ["error", "skip"]},
    )
    on_nonfinite_loss: str = field(
        default="stop",
        metadata={"help": "A step whose loss or gradients are NaN/inf: 'stop' naming the step and its clips; "
                  "'skip' it (weights untouched, counted).", "choices": ["stop", "skip"]},
    )
    audio_check: str = field(
        default="tail",
        metadata={"help": "Start-up check of each file: 'header', 'tail' (catches truncated files) or 'full' "
                  "(decodes everything: also NaN/inf samples).", "choices": ["header", "tail", "full"]},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow dataset/model code from the Hub."})
    logging_steps: int = field(default=500, metadata={"help": "Log training figures every N optimizer steps."})
    saving_steps: int = field(default=500, metadata={"help": "Write a resumable checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Default: resume from the newest complete checkpoint in output_dir. 'false': start fresh."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Model dir or Hub id whose config and feature extractor are used; weights start random."},
    )
    config_name: str | None = field(default=None, metadata={"help": "Config to use instead of the model's."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Validation batch size per process."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases, norms, codebook)."})
    num_train_epochs: int = field(default=3, metadata={"help": "Epochs, unless --max_train_steps is set."})
    max_train_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides the epochs."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip the gradient norm (default: no clip)."})
    lr_scheduler_type: str = field(
        default="linear",
        metadata={"help": "Learning-rate schedule.", "choices": ["linear", "cosine", "cosine_with_restarts",
                                                                  "polynomial", "constant", "constant_with_warmup"]},
    )
    num_warmup_steps: int = field(default=0, metadata={"help": "Warm-up steps of the learning-rate schedule."})
    seed: int = field(default=0, metadata={"help": "Seed for weights, data order, masks and negatives."})
    max_gumbel_temperature: float = field(default=2.0, metadata={"help": "Gumbel-softmax temperature at step 0."})
    min_gumbel_temperature: float = field(default=0.5, metadata={"help": "Floor of the Gumbel temperature."})
    gumbel_temperature_decay: float = field(default=0.999995, metadata={"help": "Temperature factor per step."})
    max_duration_in_seconds: float = field(default=5.0, metadata={"help": "Drop longer clips (counted)."})
    min_duration_in_seconds: float = field(default=3.0, metadata={"help": "Drop shorter clips (counted)."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad input lengths to a multiple."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    mask_time_prob: float | None = field(
        default=None, metadata={"help": "Share of frames that start a masked span (default: the config's)."}
    )
    mask_time_length: int | None = field(default=None, metadata={"help": "Frames per masked span (config's)."})
    mixed_precision: str | None = field(
        default=None,
        metadata={"help": "no, fp16 or bf16 (default: what `accelerate launch` / its config says).",
                  "choices": ["no", "fp16", "bf16"]},
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when an accelerator is present."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Processes decoding training audio."})
    report_to: list[str] | None = field(
        default=None, metadata={"help": "Trackers: tensorboard, wandb, all (when installed). Default: none."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (datasets, models, upload)."})

    def __post_init__(self) -> None:
        require_model_or_config(self.model_name_or_path, self.config_name)
        if self.max_train_steps is not None and self.max_train_steps < 1:
            raise UsageError(f"--max_train_steps {self.max_train_steps}: give a positive number of steps.")
        configs = self.dataset_config_names or [None]
        if len(configs) == 1:
            configs = configs * len(self.dataset_split_names)
        if len(configs) != len(self.dataset_split_names):
            raise UsageError(
                f"--dataset_config_names has {len(configs)} entries and --dataset_split_names "
                f"{len(self.dataset_split_names)}: give one config per split (or a single config for all)."
            )
        self.dataset_config_names = configs
        if not 0 <= self.validation_split_percentage < 100:
            raise UsageError("--validation_split_percentage must be in 0..99.")
        if self.min_gumbel_temperature > self.max_gumbel_temperature:
            raise UsageError("--min_gumbel_temperature is above --max_gumbel_temperature.")
        if self.gradient_accumulation_steps < 1 or self.logging_steps < 1 or self.saving_steps < 1:
            raise UsageError("--gradient_accumulation_steps, --logging_steps and --saving_steps must be >= 1.")
