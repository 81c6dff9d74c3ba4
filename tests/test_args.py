import json
from pathlib import Path

import pytest
from transformers import TrainingArguments

from asr_finetune.args import parse_args
from asr_finetune.data.sampling import BatchingArguments
from asr_finetune.tasks.ctc import CTCDataArguments, CTCModelArguments

CTC = (CTCModelArguments, CTCDataArguments, BatchingArguments, TrainingArguments)
BASE = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "out"]

# Every flag of the reference CTC script (anchors.md), with a value of the right kind.
REFERENCE_CTC_FLAGS = [
    "--tokenizer_name_or_path",
    "t",
    "--cache_dir",
    "c",
    "--freeze_feature_encoder",
    "false",
    "--attention_dropout",
    "0.1",
    "--activation_dropout",
    "0.1",
    "--feat_proj_dropout",
    "0.1",
    "--hidden_dropout",
    "0.1",
    "--final_dropout",
    "0.1",
    "--mask_time_prob",
    "0.1",
    "--mask_time_length",
    "5",
    "--mask_feature_prob",
    "0.1",
    "--mask_feature_length",
    "4",
    "--layerdrop",
    "0.1",
    "--ctc_loss_reduction",
    "sum",
    "--ctc_zero_infinity",
    "true",
    "--add_adapter",
    "true",
    "--dataset_config_name",
    "tr",
    "--train_split_name",
    "train",
    "--eval_split_name",
    "validation",
    "--audio_column_name",
    "a",
    "--text_column_name",
    "sentence",
    "--overwrite_cache",
    "--preprocessing_num_workers",
    "2",
    "--max_train_samples",
    "10",
    "--max_eval_samples",
    "5",
    "--eval_metrics",
    "wer",
    "cer",
    "--max_duration_in_seconds",
    "15",
    "--min_duration_in_seconds",
    "1",
    "--preprocessing_only",
    "--token",
    "x",
    "--trust_remote_code",
    "--unk_token",
    "<unk>",
    "--pad_token",
    "<pad>",
    "--word_delimiter_token",
    "_",
    "--phoneme_language",
    "tr",
]


def test_every_reference_flag_is_accepted() -> None:
    model, data, _, training = parse_args(CTC, BASE + REFERENCE_CTC_FLAGS)
    assert model.hidden_dropout == 0.1 and model.ctc_loss_reduction == "sum" and model.add_adapter
    assert data.eval_metrics == ["wer", "cer"] and data.text_column_name == "sentence"
    assert data.phoneme_language == "tr" and data.preprocessing_only
    assert model.freeze_feature_encoder is False
    assert training.output_dir == "out"


def test_recipe_chars_to_ignore_line() -> None:
    chars = [",", "?", ".", "!", "-", ";", ":", '"', "“", "%", "‘", "”", "�"]
    _, data, _, _ = parse_args(CTC, BASE + ["--chars_to_ignore", *chars])
    assert data.chars_to_ignore == chars


def test_legacy_flags_are_translated_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    argv = BASE + ["--evaluation_strategy", "steps", "--group_by_length", "--overwrite_output_dir", "--do_train"]
    with caplog.at_level("WARNING"):
        _, _, _, training = parse_args(CTC, argv)
    assert str(training.eval_strategy).endswith("steps") or training.eval_strategy == "steps"
    # Both stacks: --overwrite_output_dir starts fresh (on 4.55 it is a real field, which the Trainer ignores
    # when our checkpoints are found), and length grouping follows the duration column.
    assert training.resume_from_checkpoint == "false"
    grouping = getattr(training, "train_sampling_strategy", None) == "group_by_length"
    assert grouping or training.group_by_length
    notes = [r.getMessage() for r in caplog.records if r.name == "asr_finetune.args"]
    assert any("--overwrite_output_dir: starting fresh" in note for note in notes)
    translated = [name for name in ("evaluation_strategy", "group_by_length") if not hasattr(training, name)]
    assert len(notes) == 1 + len(translated)
    assert training.do_train


def test_legacy_switch_with_explicit_false_is_not_grouping() -> None:
    _, _, _, training = parse_args(CTC, BASE + ["--group_by_length", "false", "--do_train"])
    assert getattr(training, "train_sampling_strategy", "random") == "random"
    assert training.do_train


def test_a_json_file_replaces_all_flags(tmp_path: Path) -> None:
    config = {
        "model_name_or_path": "m",
        "dataset_name": "d",
        "output_dir": "out",
        "evaluation_strategy": "epoch",
        "chars_to_ignore": [",", "-"],
        "learning_rate": 3e-4,
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(config))
    _, data, _, training = parse_args(CTC, [str(path)])
    assert data.chars_to_ignore == [",", "-"] and training.learning_rate == 3e-4
    assert str(training.eval_strategy).endswith("epoch") or training.eval_strategy == "epoch"


def test_a_model_or_config_is_required() -> None:
    with pytest.raises(ValueError, match="--model_name_or_path.*--config_name"):
        parse_args(CTC, ["--dataset_name", "d", "--output_dir", "out"])


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="--no_such_flag"):
        parse_args(CTC, BASE + ["--no_such_flag", "1"])
