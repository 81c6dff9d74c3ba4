"""Steps every fine-tuning script ends with: publish the model, evaluate with a per-utterance report."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .data import DataError, DropCounts, SplitConfig, prepare_split
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


def train_and_save(trainer: Any, resume_from_checkpoint: str | None) -> dict[str, float]:
    """Train (resuming if asked), publish the final model, and save train metrics including throughput."""
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    save_final_model(trainer)
    metrics = dict(result.metrics)
    metrics.update({f"train_{name}": value for name, value in trainer.throughput.totals().items()})
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


def evaluate_and_report(trainer: Any, eval_dataset: Any, metrics: Any, references: Sequence[str]) -> dict[str, float]:
    """Evaluate once; log and save the metrics and write one line per utterance to eval_predictions.jsonl.

    ``metrics`` is the Trainer's compute_metrics object; after prediction it holds ``hypotheses``.
    """
    output = trainer.predict(eval_dataset, metric_key_prefix="eval")
    results = dict(output.metrics)
    trainer.log_metrics("eval", results)
    trainer.save_metrics("eval", results)
    if trainer.is_world_process_zero():
        rows = utterance_report(eval_dataset.ids, references, metrics.hypotheses, **metrics.normalized_forms())
        write_jsonl(rows, Path(trainer.args.output_dir) / PREDICTIONS_FILE)
        worst = sorted(rows, key=lambda row: row["errors"], reverse=True)[:3]
        for row in worst:
            if row["errors"]:
                logger.info(
                    "  %d errors in %s: ref=%r hyp=%r", row["errors"], row["id"], row["reference"], row["hypothesis"]
                )
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


# ---------------------------------------------------------------------------------------------- shared start-up


def evaluation_requested(training_args: Any) -> bool:
    """True for ``--do_eval`` or an ``--eval_strategy`` other than "no" (evaluation during training)."""
    return bool(training_args.do_eval) or str(training_args.eval_strategy) not in ("no", "IntervalStrategy.NO")


def load_splits(
    data_args: Any,
    training_args: Any,
    normalize: Callable[[list[str]], list[str]],
    cache_dir: str | None,
    evaluate: bool,
) -> tuple[dict[str, Any], dict[str, DropCounts]]:
    """The "train" split (when training) and the "eval" split (when evaluating), prepared by the main process first.

    ``data_args`` is any :class:`asr_finetune.args.DataArguments`.
    """
    config = SplitConfig(
        dataset_name=data_args.dataset_name,
        audio_column=data_args.audio_column_name,
        text_column=data_args.text_column_name,
        id_column=data_args.id_column_name,
        config_name=data_args.dataset_config_name,
        cache_dir=cache_dir,
        token=data_args.token,
        trust_remote_code=data_args.trust_remote_code,
        num_proc=data_args.preprocessing_num_workers,
        overwrite_cache=data_args.overwrite_cache,
        on_bad_row=data_args.on_bad_row,
        min_duration=data_args.min_duration_in_seconds,
        max_duration=data_args.max_duration_in_seconds,
    )
    wanted = []
    if training_args.do_train:
        wanted.append(("train", data_args.train_split_name, data_args.max_train_samples))
    if evaluate:
        wanted.append(("eval", data_args.eval_split_name, data_args.max_eval_samples))
    splits, drops = {}, {}
    with training_args.main_process_first(desc="dataset preparation"):
        for name, expression, max_samples in wanted:
            # Evaluation keeps long recordings: they are decoded in chunks (asr_finetune.longform), not dropped.
            split_config = config if name == "train" else dataclasses.replace(config, max_duration=None)
            splits[name], drops[name] = prepare_split(split_config, expression, normalize, max_samples=max_samples)
    return splits, drops


def log_splits(splits: dict[str, Any], drops: dict[str, DropCounts]) -> None:
    for name, split in splits.items():
        hours = sum(split["duration"]) / 3600
        logger.info("%s: %d utterances, %.2f h; dropped: %s", name, len(split), hours, drops[name].summary())


def run_cli(main: Callable[[], Any]) -> None:
    """Run an entry script's ``main``; bad input data or an impossible backend request ends it with the message
    and exit status 2. The process group of a distributed run is torn down either way."""
    from .backends import BackendError, end_distributed

    try:
        main()
    except (DataError, BackendError) as err:
        logging.getLogger("asr_finetune").error("%s", err)
        sys.exit(2)
    finally:
        end_distributed()
