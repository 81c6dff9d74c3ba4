"""Steps every fine-tuning script ends with: publish the model, evaluate with a per-utterance report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .checkpoints import checkpoint_problem, read_state, remove_checkpoints, resolve_resume, starts_fresh
from .data import DropCounts, SplitConfig, prepare_split
from .errors import DataError, UsageError, one_line
from .files import describe_write_failure, write_json, write_jsonl
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


def finished_state(args: Any, checkpoint: str | None) -> dict[str, Any] | None:
    """The state of ``checkpoint`` when it already holds everything this command asks to train, else None.

    ``--max_steps N``: step N reached. Epochs: the checkpoint's planned steps reached, for as many epochs.
    """
    state = read_state(checkpoint) if checkpoint else None
    if state is None:
        return None
    step = state.get("global_step", 0)
    if args.max_steps > 0:
        done = step >= args.max_steps
    else:
        planned = state.get("max_steps", float("inf"))
        done = step >= planned and state.get("num_train_epochs", 0) >= args.num_train_epochs
    return state if done else None


def final_model_published(output_dir: str | Path, step: int) -> bool:
    """True when output_dir holds the complete final model of step ``step`` (the last thing a run writes)."""
    output_dir = Path(output_dir)
    state = read_state(output_dir)
    return (
        state is not None
        and state.get("global_step") == step
        and checkpoint_problem(output_dir) is None
        and not (output_dir / PARTIAL_DIR).exists()
    )


def train_and_save(trainer: Any, resume_from_checkpoint: str | None) -> dict[str, float]:
    """Train (resuming if asked), publish the final model, and save train metrics including throughput.

    A rerun of a finished command trains nothing: it says so, loads the last checkpoint's weights (for the
    evaluation that may follow), and publishes the final model only if a kill cut that short.
    """
    done = finished_state(trainer.args, resume_from_checkpoint)
    if done is not None:
        return _finish_complete_run(trainer, resume_from_checkpoint, done)
    with disk_errors(trainer.args.output_dir):
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        save_final_model(trainer)
    metrics = dict(result.metrics)
    totals = trainer.throughput.totals()
    totals["bad_rows_skipped"] = _sum_over_processes(trainer, totals["bad_rows_skipped"])
    totals["nonfinite_steps_skipped"] = trainer.nonfinite.skipped_steps
    metrics.update({f"train_{name}": value for name, value in totals.items()})
    trainer.log_metrics("train", metrics)
    with disk_errors(trainer.args.output_dir):
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    return metrics


def _sum_over_processes(trainer: Any, value: int) -> int:
    if trainer.args.world_size <= 1:
        return value
    import torch

    return int(trainer.accelerator.reduce(torch.tensor([value], device=trainer.args.device), "sum")[0])


def _finish_complete_run(trainer: Any, checkpoint: str, state: dict[str, Any]) -> dict[str, float]:
    from transformers import TrainerState

    output_dir = trainer.args.output_dir
    step = state.get("global_step", 0)
    trainer._load_from_checkpoint(checkpoint)  # private in 4.55 and 5.24 alike: weights as the Trainer resumes them
    if final_model_published(output_dir, step):
        logger.warning(
            "Training is already complete: %s is step %d of %d. The model in %s is left as it is. To train again "
            "pass --resume_from_checkpoint false (or --overwrite_output_dir); to go on, a larger --max_steps.",
            checkpoint, step, state.get("max_steps", step), output_dir,
        )
    else:
        logger.warning("Training is complete (%s) but the final model was not published (cut off while saving): "
                       "publishing it now from that checkpoint.", checkpoint)
        with disk_errors(output_dir):
            save_final_model(trainer)
            trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
            trainer.save_state()
    previous = Path(output_dir) / "train_results.json"
    try:
        return json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"global_step": step}


@contextlib.contextmanager
def disk_errors(directory: str | Path) -> Iterator[None]:
    """Turn a write that failed for lack of space or permission into one line that says so."""
    try:
        yield
    except UsageError:
        raise
    except Exception as err:
        message = describe_write_failure(err, directory)
        if message is None:
            raise
        raise UsageError(message) from err


def require_rows(splits: dict[str, Any], drops: dict[str, DropCounts]) -> None:
    """Stop at start when filtering left a split empty (an evaluation of nothing reports no figures)."""
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(
                f"No usable rows left in the {name} split after filtering (dropped: {drops[name].summary()}). "
                "See data_report.json; relax the filters or choose another split."
            )


def check_hub_access(training_args: Any) -> None:
    """``--push_to_hub`` must be able to push: checked at start, not after hours of training."""
    if not getattr(training_args, "push_to_hub", False):
        return
    from huggingface_hub import HfApi

    try:
        HfApi(token=getattr(training_args, "hub_token", None)).whoami()
    except Exception as err:
        raise UsageError(
            f"--push_to_hub: cannot use the Hugging Face Hub ({type(err).__name__}: {one_line(err)[:120]}). Log in "
            "with `hf auth login` (or pass --hub_token), check the network, or drop --push_to_hub."
        ) from err


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


def prepare_run(training_args: Any) -> str | None:
    """Start-up checks every Trainer run makes before any work: the device can do what the flags ask, one run per
    output_dir (a lock), the Hub reachable when pushing. Returns the checkpoint to resume from (None: start from
    the model); a fresh start removes the old checkpoints, so a later rerun cannot resume from the run replaced."""
    from .backends import check_precision, describe_world
    from .run_lock import lock_output_dir

    logger.warning(describe_world(training_args))
    check_precision(training_args)
    lock_output_dir(training_args.output_dir, training_args.process_index == 0)
    check_hub_access(training_args)
    if not training_args.do_train:
        return None
    resume = resolve_resume(training_args.output_dir, training_args.resume_from_checkpoint)
    if resume is None and starts_fresh(training_args.resume_from_checkpoint):
        with training_args.main_process_first(desc="fresh start"):
            if training_args.process_index == 0:
                remove_checkpoints(training_args.output_dir)
    return resume


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
        audio_check=data_args.audio_check,
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
    """Run an entry script's ``main``; a user mistake (bad flags, bad data, an impossible request, a busy or full
    output dir, a NaN step) ends it with a one-line message and exit status 2, no traceback. The process group
    of a distributed run is torn down and the output_dir lock released either way."""
    from .launch import end_distributed
    from .run_lock import release_all

    failed = False
    try:
        main()
    except UsageError as err:
        failed = True
        logging.getLogger("asr_finetune").error("%s", one_line(err))
        sys.exit(2)
    finally:
        release_all()
        end_distributed(abort=failed)
