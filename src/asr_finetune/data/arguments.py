"""The data flags every script shares (dataset, columns, duration limits, bad-row policy) and those of the two
fine-tuning scripts (splits, text language, evaluation normaliser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asr_finetune.data.loading import SplitConfig

# ---------------------------------------------------------------------------------------------- arguments


@dataclass(kw_only=True)
class AudioSourceArguments:
    """Where the audio is and how it is checked and filtered: the data flags every entry script shares."""

    dataset_name: str = field(
        metadata={"help": "Hub dataset id, a local audiofolder dir, or a CSV/JSON/JSONL manifest (or a dir of them)."}
    )
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio (path or audio)."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached preprocessing."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for header reads."})
    max_duration_in_seconds: float = field(default=20.0, metadata={"help": "Drop longer utterances (counted)."})
    min_duration_in_seconds: float = field(default=0.0, metadata={"help": "Drop shorter utterances (counted)."})
    preprocessing_only: bool = field(
        default=False, metadata={"help": "Load, check and filter the data (and build the vocab), then stop."}
    )
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

    def split_config(self, **where: Any) -> SplitConfig:
        """The :class:`SplitConfig` these flags describe; ``where`` adds the script's own columns, Hub config,
        cache dir and token."""
        return SplitConfig(
            dataset_name=self.dataset_name,
            audio_column=self.audio_column_name,
            trust_remote_code=self.trust_remote_code,
            num_proc=self.preprocessing_num_workers,
            overwrite_cache=self.overwrite_cache,
            on_bad_row=self.on_bad_row,
            min_duration=self.min_duration_in_seconds,
            max_duration=self.max_duration_in_seconds,
            audio_check=self.audio_check,
            **where,
        )


@dataclass
class DataArguments(AudioSourceArguments):
    """Labelled data of both fine-tuning scripts: splits, transcript and id columns, text options."""

    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_split_name: str = field(
        default="train+validation", metadata={"help": "Training split, e.g. 'train+validation', 'train[:100]'."}
    )
    eval_split_name: str = field(default="test", metadata={"help": "Evaluation split expression."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding the transcript."})
    id_column_name: str = field(
        default="id", metadata={"help": "Column naming each utterance in reports (falls back to the audio path)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private datasets/models."})
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
