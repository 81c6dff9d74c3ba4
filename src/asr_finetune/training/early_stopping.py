"""Choosing the best checkpoint and stopping early, by an error rate on the eval split.

Two traps of the stock Trainer are closed here. ``--metric_for_best_model wer`` alone makes transformers assume that
greater is better (it assumes so for every name not ending in "loss"), so ``--load_best_model_at_end`` would keep the
checkpoint with the *highest* WER; and ``--load_best_model_at_end`` alone judges checkpoints by eval loss, not WER.
Here checkpoints are compared by (normalised) WER unless the user names another metric.
``--early_stopping_patience N`` stops training after N evaluations without improvement, checkpoints the step it
stopped at, and a rerun of the command reports the run as complete instead of training on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import EarlyStoppingCallback

from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)

ERROR_RATES = ("wer", "cer")
"""Metrics where lower is better (besides losses), also as ``normalized_*``; checkpoints are compared by the first:
normalised where evaluation normalises (punctuation and case are not what a fine-tune should be judged on)."""


@dataclass
class StoppingArguments:
    """When to stop before the planned steps; shared by both fine-tuning scripts."""

    _argument_group_name = "Early stopping (by --metric_for_best_model on the eval split)"

    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop training after this many evaluations in a row without a better "
                  "--metric_for_best_model (default wer). Needs --eval_strategy steps or epoch; the step it stops "
                  "at is checkpointed, and a rerun reports the run as complete."},
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={"help": "How much --metric_for_best_model must improve to count as better (absolute)."},
    )

    def __post_init__(self) -> None:
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise UsageError(f"--early_stopping_patience {self.early_stopping_patience}: give 1 or more evaluations.")
        if self.early_stopping_threshold < 0:
            raise UsageError(f"--early_stopping_threshold {self.early_stopping_threshold}: give 0 or more.")


def choose_best_by(
    training_args: Any, stopping: StoppingArguments, given: dict[str, Any], eval_metrics: list[str],
    normalized: bool = True,
) -> None:
    """Set (or refuse) how checkpoints are compared, before anything is loaded.

    ``given``: the flags as typed (:meth:`asr_finetune.args.CommandLine.flags`), to tell a user's choice from a
    transformers default. ``eval_metrics``: what evaluation computes (``--eval_metrics``); ``normalized``: whether it
    also scores normalised text (``eval_normalized_wer``), the default metric where it does.
    """
    args = training_args
    ranking = args.load_best_model_at_end or stopping.early_stopping_patience is not None
    if ranking and "metric_for_best_model" not in given:
        args.metric_for_best_model = f"normalized_{ERROR_RATES[0]}" if normalized else ERROR_RATES[0]
        logger.info("Checkpoints are compared by eval_%s (lower is better); --metric_for_best_model picks another.",
                    args.metric_for_best_model)
    metric = (args.metric_for_best_model or "").removeprefix("eval_")
    rate = metric.removeprefix("normalized_")
    if rate in ERROR_RATES:
        if rate not in eval_metrics or (metric != rate and not normalized):
            raise UsageError(f"--metric_for_best_model {metric} is not computed at evaluation (--eval_metrics "
                             f"{' '.join(eval_metrics)}{'' if normalized else ', --eval_normalizer none'}): add "
                             f"{rate} to --eval_metrics{'' if normalized else ', or choose ' + rate}.")
        if "greater_is_better" not in given:
            args.greater_is_better = False
        elif args.greater_is_better:
            raise UsageError(f"--metric_for_best_model {metric} with --greater_is_better true would keep the "
                             f"checkpoint with the most errors: leave --greater_is_better out (lower {metric} is "
                             "better).")
    if stopping.early_stopping_patience is None:
        return
    if str(args.eval_strategy) in ("no", "IntervalStrategy.NO"):
        raise UsageError("--early_stopping_patience counts evaluations during training: add --eval_strategy steps "
                         "--eval_steps N (or --eval_strategy epoch) and an eval split.")
    if not args.do_train:
        raise UsageError("--early_stopping_patience stops training: add --do_train, or leave it out.")
    if str(args.save_strategy) in ("best", "SaveStrategy.BEST"):
        raise UsageError("--early_stopping_patience checkpoints the step it stops at, which --save_strategy best "
                         "would not: use --save_strategy steps or epoch (with --load_best_model_at_end to keep the "
                         "best).")


def early_stopping_callbacks(stopping: StoppingArguments) -> list[Any]:
    """The callbacks to give the Trainer (none without ``--early_stopping_patience``)."""
    if stopping.early_stopping_patience is None:
        return []
    return [EarlyStopping(stopping.early_stopping_patience, stopping.early_stopping_threshold)]


class EarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, which also checkpoints the step it stops at, says why it stopped, and resumes
    with its counter.

    Its counter is saved in each checkpoint's trainer_state.json (``stateful_callbacks``); :func:`stopped_early`
    reads it there."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        # On resume, the counter comes back from the checkpoint (transformers restores callback states only with
        # --restore_callback_states_from_checkpoint), and a checkpoint written without early stopping gets an entry
        # (transformers' checkpoint save fails on a callback its resumed state does not list).
        saved = state.stateful_callbacks.get(type(self).__name__)
        saved = saved[0] if isinstance(saved, list) and saved else saved
        if isinstance(saved, dict) and not args.restore_callback_states_from_checkpoint:
            counter = saved.get("attributes", {}).get("early_stopping_patience_counter", 0)
            self.early_stopping_patience_counter = int(counter)
        state.stateful_callbacks[type(self).__name__] = self.state()

    @property
    def stopped(self) -> bool:
        return self.early_stopping_patience_counter >= self.early_stopping_patience

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float], **kwargs: Any) -> None:
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if not self.stopped:
            return
        if str(args.save_strategy) not in ("no", "SaveStrategy.NO", "IntervalStrategy.NO"):
            control.should_save = True
        name = args.metric_for_best_model
        logger.warning("Stopping early at step %d: eval %s has not improved for %d evaluation(s) (best %s%s).",
                       state.global_step, name, self.early_stopping_patience_counter,
                       f"{state.best_metric:.4f}" if state.best_metric is not None else "none",
                       f", {state.best_model_checkpoint}" if state.best_model_checkpoint else "")


def has_early_stopping(trainer: Any) -> bool:
    """Whether the Trainer runs with ``--early_stopping_patience``."""
    return any(isinstance(callback, EarlyStopping) for callback in trainer.callback_handler.callbacks)


def has_stopped(trainer: Any) -> bool:
    """True when the Trainer's early stopping (if any) ended training."""
    callbacks = trainer.callback_handler.callbacks
    return any(isinstance(callback, EarlyStopping) and callback.stopped for callback in callbacks)


def stopped_early(state: dict[str, Any]) -> bool:
    """True when a checkpoint's trainer_state.json (as a dict) was saved by a run that stopped early there."""
    saved = (state.get("stateful_callbacks") or {}).get(EarlyStopping.__name__)
    for entry in saved if isinstance(saved, list) else [saved]:
        if not entry:
            continue
        patience = entry.get("args", {}).get("early_stopping_patience")
        counter = entry.get("attributes", {}).get("early_stopping_patience_counter", 0)
        if patience and counter >= patience:
            return True
    return False
