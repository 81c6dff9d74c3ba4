"""The best checkpoint chosen by WER, and --early_stopping_patience (issue 24)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_faults import ctc_args

from asr_finetune.args import CommandLine, parse_args
from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.errors import UsageError
from asr_finetune.tasks.finetuning import scores_normalized_text
from asr_finetune.tools.recipes import script_arguments
from asr_finetune.training.early_stopping import StoppingArguments, choose_best_by


def best_by(*flags: str, eval_metrics: tuple[str, ...] = ("wer",)):
    argv = ["--output_dir", "/tmp/unused", "--model_name_or_path", "m", "--dataset_name", "d", *flags]
    groups = parse_args(script_arguments("ctc"), argv)
    data, training = groups[1], groups[-1]
    stopping = next(group for group in groups if isinstance(group, StoppingArguments))
    choose_best_by(training, stopping, CommandLine.read(argv).flags(), list(eval_metrics),
                   scores_normalized_text(data))
    return training


def test_wer_as_the_best_metric_means_lower_is_better() -> None:
    # transformers alone makes greater_is_better True for every metric not named *loss: the WORST WER would be kept
    training = best_by("--metric_for_best_model", "wer", "--load_best_model_at_end", "true", "--eval_strategy", "steps")
    assert training.greater_is_better is False


def test_keeping_the_best_checkpoint_compares_wer_not_loss_unless_asked() -> None:
    training = best_by("--load_best_model_at_end", "true", "--eval_strategy", "steps")
    assert (training.metric_for_best_model, training.greater_is_better) == ("normalized_wer", False)
    training = best_by("--load_best_model_at_end", "true", "--eval_strategy", "steps", "--eval_normalizer", "none")
    assert (training.metric_for_best_model, training.greater_is_better) == ("wer", False)
    training = best_by("--load_best_model_at_end", "true", "--eval_strategy", "steps", "--metric_for_best_model",
                       "loss")  # fmt: skip
    assert (training.metric_for_best_model, training.greater_is_better) == ("loss", False)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--metric_for_best_model", "wer", "--greater_is_better", "true"), "would keep the checkpoint with the most"),
        (("--metric_for_best_model", "cer"), r"cer is not computed at evaluation \(--eval_metrics wer\)"),
        (("--metric_for_best_model", "normalized_wer", "--eval_normalizer", "none"), "or choose wer"),
        (("--early_stopping_patience", "2", "--do_train"), "add --eval_strategy steps"),
        (("--early_stopping_patience", "0"), "--early_stopping_patience 0: give 1 or more"),
        (("--early_stopping_patience", "2", "--eval_strategy", "steps"), "add --do_train"),
        (("--early_stopping_patience", "2", "--do_train", "--eval_strategy", "steps", "--save_strategy", "best"),
         "--save_strategy best would not"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        best_by(*flags)


def test_a_run_that_stops_improving_stops_checkpoints_and_a_rerun_reports_it_complete(
    tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = tmp_path / "run"
    # A learning rate too small to change any transcript: WER is the same at every evaluation.
    args = ctc_args(tiny_model, corpus, output_dir, "--do_train", "--learning_rate", "1e-12", "--max_steps", "40",
                    "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "40",
                    "--early_stopping_patience", "2")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        ctc_main(args)
    # evaluations at steps 2 (best), 4 and 6 (no better): stopped at 6, which is checkpointed though save_steps is 40
    assert "Stopping early at step 6: eval normalized_wer has not improved for 2 evaluation(s)" in caplog.text
    assert json.loads((output_dir / "train_results.json").read_text())["train_stopped_early_at_step"] == 6
    assert (output_dir / "checkpoint-6").is_dir() and not list(output_dir.glob("checkpoint-[0-5]"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ctc_main(args)
    assert "Training is already complete (stopped early): " in caplog.text
    assert not list(output_dir.glob("checkpoint-[1-9][0-9]*"))  # nothing trained beyond step 6


def test_early_stopping_added_on_resume_continues_then_stops(tiny_model: Path, corpus: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    output_dir = tmp_path / "run"
    common = ("--do_train", "--learning_rate", "1e-12", "--eval_strategy", "steps", "--eval_steps", "2",
              "--save_steps", "2")  # fmt: skip
    ctc_main(ctc_args(tiny_model, corpus, output_dir, *common, "--max_steps", "4"))
    with caplog.at_level(logging.WARNING):  # a checkpoint saved without early stopping's state resumes with it
        ctc_main(ctc_args(tiny_model, corpus, output_dir, *common, "--max_steps", "40", "--early_stopping_patience",
                          "1"))  # fmt: skip
    assert "Stopping early at step 8" in caplog.text
    assert json.loads((output_dir / "train_results.json").read_text())["train_stopped_early_at_step"] == 8
