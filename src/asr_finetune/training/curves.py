"""Pictures of a run: ``training_curves.png`` in the output dir, redrawn at each evaluation.

Fine-tuning (Trainer): loss, learning rate, evaluation WER/CER (and any other ``eval_`` score), audio seconds per
second, from the Trainer's log history (:class:`TrainingCurvesCallback`). Pretraining: loss, codevector perplexity,
gradient norm and learning rate, from ``pretraining_log.jsonl`` (:func:`write_pretraining_curves`).

matplotlib draws through its Agg canvas directly (no pyplot, no display, no global backend switch); the picture is
written to a temporary file and moved into place, so a reader never sees half a PNG.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
NOT_SCORES = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step"}

Panel = tuple[str, Sequence[str]]
"""A subplot: its title and the log keys drawn in it (keys absent from every record are skipped)."""

FINETUNING_PANELS: tuple[Panel, ...] = (
    ("loss", ("loss", "eval_loss")),
    ("learning rate", ("learning_rate",)),
    ("evaluation WER / CER", ()),  # every eval_ score: filled in from the records
    ("audio seconds per second", ("audio_seconds_per_second",)),
)
PRETRAINING_PANELS: tuple[Panel, ...] = (
    ("loss", ("loss", "eval_loss")),
    ("codevector perplexity", ("perplexity", "eval_perplexity")),
    ("gradient norm", ("grad_norm",)),
    ("learning rate", ("lr",)),
)


def series(records: Iterable[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one numeric key over the records that carry it."""
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "step" in record:
            steps.append(float(record["step"]))
            values.append(float(value))
    return steps, values


def eval_scores(records: Iterable[dict[str, Any]]) -> list[str]:
    """The ``eval_`` keys that are scores (WER, CER, normalised and plug-in metrics), in first-seen order."""
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            timing = key.endswith(("_runtime", "_per_second", "_time"))  # e.g. eval_model_preparation_time
            if key.startswith("eval_") and key not in NOT_SCORES and not timing and isinstance(value, (int, float)):
                keys[key] = None
    return list(keys)


def draw_curves(records: Sequence[dict[str, Any]], panels: Sequence[Panel], path: str | Path, title: str) -> bool:
    """Draw one subplot per panel (step on the x axis) into ``path``; False (and no file) when nothing to draw."""
    filled = [(name, keys or tuple(eval_scores(records))) for name, keys in panels]
    drawn = [(name, [(key, *series(records, key)) for key in keys]) for name, keys in filled]
    drawn = [(name, [line for line in lines if line[1]]) for name, lines in drawn]
    if not any(lines for _, lines in drawn):
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2).flatten()
    for ax, (name, lines) in zip(axes, drawn, strict=True):
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        for key, steps, values in lines:
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
        if lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "not logged yet", ha="center", va="center", transform=ax.transAxes, color="gray")
    figure.suptitle(title)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, format="png", dpi=90)
    os.replace(partial, path)
    return True


def write_training_curves(log_history: Sequence[dict[str, Any]], output_dir: str | Path) -> bool:
    """``training_curves.png`` of a Trainer run from its ``state.log_history``."""
    return draw_curves(log_history, FINETUNING_PANELS, Path(output_dir) / CURVES_FILE, Path(output_dir).name)


def write_pretraining_curves(log_file: str | Path, output_dir: str | Path) -> bool:
    """``training_curves.png`` of a pretraining run from its ``pretraining_log.jsonl``."""
    lines = Path(log_file).read_text(encoding="utf-8").splitlines() if Path(log_file).is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    title = f"{Path(output_dir).name} (wav2vec2 pretraining)"
    return draw_curves(records, PRETRAINING_PANELS, Path(output_dir) / CURVES_FILE, title)


class TrainingCurvesCallback(TrainerCallback):
    """Redraws ``training_curves.png`` after each evaluation, at the end of training, and after the final
    evaluation (``Trainer.predict``, whose figures are not in the log history); main process only."""

    def __init__(self) -> None:
        self.final_eval: list[dict[str, Any]] = []

    def _draw(self, args: Any, state: Any) -> None:
        if not state.is_world_process_zero:
            return
        try:
            write_training_curves([*state.log_history, *self.final_eval], args.output_dir)
        except OSError as err:  # a picture is never worth a failed run
            logger.warning("Could not write %s: %s", Path(args.output_dir) / CURVES_FILE, err)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._draw(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._draw(args, state)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:  # fmt: skip
        if metrics:
            self.final_eval = [{**metrics, "step": state.global_step}]
        self._draw(args, state)
