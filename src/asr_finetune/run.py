"""Steps every fine-tuning script ends with: publish the model, evaluate with a per-utterance report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import DropCounts
from .files import write_json, write_jsonl
from .metrics import utterance_report
from .outputs import PARTIAL_DIR, publish_files

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "eval_predictions.jsonl"
DATA_REPORT_FILE = "data_report.json"


def save_final_model(trainer: Any) -> None:
    """Save model + processor to output_dir through a staging folder (never a half-written model)."""
    output_dir = Path(trainer.args.output_dir)
    staging = output_dir / PARTIAL_DIR
    trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        publish_files(staging, output_dir)


def evaluate_and_report(trainer: Any, eval_dataset: Any, metrics: Any, references: Sequence[str]) -> dict[str, float]:
    """Evaluate once; log and save the metrics and write one line per utterance to eval_predictions.jsonl.

    ``metrics`` is the Trainer's compute_metrics object; after prediction it holds ``hypotheses``.
    """
    output = trainer.predict(eval_dataset, metric_key_prefix="eval")
    results = dict(output.metrics)
    trainer.log_metrics("eval", results)
    trainer.save_metrics("eval", results)
    if trainer.is_world_process_zero():
        rows = utterance_report(eval_dataset.ids, references, metrics.hypotheses)
        write_jsonl(rows, Path(trainer.args.output_dir) / PREDICTIONS_FILE)
        worst = sorted(rows, key=lambda row: row["errors"], reverse=True)[:3]
        for row in worst:
            if row["errors"]:
                logger.info("  %d errors in %s: ref=%r hyp=%r", row["errors"], row["id"], row["reference"], row["hypothesis"])
        logger.info("Per-utterance results: %s", Path(trainer.args.output_dir) / PREDICTIONS_FILE)
    return results


def write_data_report(
    training_args: Any,
    splits: dict[str, Any],
    drops: dict[str, DropCounts],
    unknown_chars: dict[str, Any],
    vocab_source: str,
) -> None:
    """data_report.json: per split, what was kept, what was dropped and why, characters the vocab lacks."""
    if training_args.process_index != 0:
        return
    report = {"vocab": vocab_source}
    for name, split in splits.items():
        report[name] = {
            "utterances": len(split),
            "hours": round(sum(split["duration"]) / 3600, 4),
            "dropped": drops[name].as_dict(),
            "dropped_examples": drops[name].examples,
            "characters_missing_from_vocab": dict(unknown_chars.get(name, {})),
        }
    write_json(report, Path(training_args.output_dir) / DATA_REPORT_FILE)
