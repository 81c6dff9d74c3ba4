"""Train and evaluate with a built Trainer: resume or report a finished run, publish the final model atomically,
evaluate with a per-utterance report (eval_predictions.jsonl)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerState

from asr_finetune.data.report import DATA_REPORT_FILE
from asr_finetune.errors import UsageError
from asr_finetune.evaluation.metrics import utterance_report
from asr_finetune.files import write_json, write_jsonl
from asr_finetune.models.adapters import ADAPTER_DIR, lora_layers, merge_lora, save_adapter
from asr_finetune.training.checkpoints import checkpoint_problem, read_state
from asr_finetune.training.early_stopping import has_early_stopping, has_stopped, stopped_early
from asr_finetune.training.memory import model_and_optimizer_state_gb, peak_memory
from asr_finetune.training.outputs import PARTIAL_DIR, disk_errors, publish_files

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "eval_predictions.jsonl"
DATASET_ROW = "dataset_row"
"""Column of the evaluation split: each clip's row in the dataset (evaluation runs longest first)."""


def save_final_model(trainer: Any) -> None:
    """Save model + processor to output_dir through a staging folder (never a half-written model). A model with
    LoRA adapters is saved merged (a plain model), and its adapter alone in ``adapter/``."""
    output_dir = Path(trainer.args.output_dir)
    staging = output_dir / PARTIAL_DIR
    if lora_layers(trainer.model):
        if trainer.is_world_process_zero():
            save_adapter(trainer.model, staging / ADAPTER_DIR)
        merged = merge_lora(trainer.model)
        logger.info("Merged %d LoRA layers into the final model (loads without peft); the adapter alone: %s.",
                    merged, output_dir / ADAPTER_DIR)  # fmt: skip
    trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        publish_files(staging, output_dir)


def finished_state(args: Any, checkpoint: str | None, early_stopping: bool = False) -> dict[str, Any] | None:
    """The state of ``checkpoint`` when it already holds everything this command asks to train, else None.

    ``--max_steps N``: step N reached. Epochs: the checkpoint's planned steps reached, for as many epochs. Or, for a
    command with ``--early_stopping_patience`` (``early_stopping``), the run stopped early at this checkpoint.
    """
    state = read_state(checkpoint) if checkpoint else None
    if state is None:
        return None
    if early_stopping and stopped_early(state):
        return state
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
    done = finished_state(trainer.args, resume_from_checkpoint, early_stopping=has_early_stopping(trainer))
    if done is not None:
        return _finish_complete_run(trainer, resume_from_checkpoint, done)
    with disk_errors(trainer.args.output_dir):
        try:
            result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        except RuntimeError as err:
            mismatch = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), None)
            if resume_from_checkpoint is None or mismatch is None:
                raise
            raise UsageError(
                f"{resume_from_checkpoint} holds a model of another shape than this command's ({mismatch}). Start "
                "fresh with --resume_from_checkpoint false, or use another --output_dir."
            ) from None
        finally:
            trainer.stop_request.restore()
        trainer.stop_request.raise_if_stopped(trainer.args.output_dir)
        trained = sum(parameter.numel() for parameter in trainer.model.parameters() if parameter.requires_grad)
        state_gb = model_and_optimizer_state_gb(trainer.model, trainer.optimizer)
        save_final_model(trainer)
    metrics = {**result.metrics, "train_trained_parameters": trained, "train_model_and_optimizer_state_gb": state_gb}
    totals = trainer.throughput.totals()
    totals["bad_rows_skipped"] = _sum_over_processes(trainer, totals["bad_rows_skipped"])
    totals["nonfinite_steps_skipped"] = trainer.nonfinite.skipped_steps
    totals.update(_stream_totals(trainer))
    totals.update(peak_memory())
    metrics.update({f"train_{name}": value for name, value in totals.items()})
    if has_stopped(trainer):
        metrics["train_stopped_early_at_step"] = trainer.state.global_step
    trainer.log_metrics("train", metrics)
    with disk_errors(trainer.args.output_dir):
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    return metrics


def _stream_totals(trainer: Any) -> dict[str, Any]:
    """A streamed train split's figures over all processes (rows read, dropped per reason); also added to
    data_report.json. Empty for a map-style split."""
    progress = getattr(trainer.train_dataset, "progress", None)
    if progress is None:
        return {}
    states = [progress.state()]
    if trainer.args.world_size > 1:
        from accelerate.utils import gather_object

        states = gather_object(states)
    dropped: dict[str, int] = {}
    for state in states:
        for reason, count in state["drops"].items():
            dropped[reason] = dropped.get(reason, 0) + count
    totals = {"stream_rows_read": sum(state["rows_read"] for state in states),
              "stream_rows_dropped": sum(dropped.values())}
    if trainer.is_world_process_zero():
        report = Path(trainer.args.output_dir) / DATA_REPORT_FILE
        content = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
        content.setdefault("train", {}).update(rows_read=totals["stream_rows_read"], dropped=dropped)
        write_json(content, report)
    return totals


def _sum_over_processes(trainer: Any, value: int) -> int:
    if trainer.args.world_size <= 1:
        return value
    import torch

    return int(trainer.accelerator.reduce(torch.tensor([value], device=trainer.args.device), "sum")[0])


def _finish_complete_run(trainer: Any, checkpoint: str, state: dict[str, Any]) -> dict[str, float]:
    output_dir = trainer.args.output_dir
    step = state.get("global_step", 0)
    # The final model is the best checkpoint's where the run kept the best (--load_best_model_at_end).
    best = state.get("best_model_checkpoint") if trainer.args.load_best_model_at_end else None
    best = str(Path(output_dir) / Path(best).name) if best else None  # recorded relative to the first run's cwd
    weights = best if best and checkpoint_problem(best) is None else checkpoint
    if best and weights != best:
        logger.warning("The best checkpoint %s is gone or incomplete: evaluating %s instead.", best, checkpoint)
    trainer._load_from_checkpoint(weights)  # private in 4.55 and 5.24 alike: weights as the Trainer resumes them
    # The run's history, so what follows (evaluation, training_curves.png) continues it instead of starting at step 0.
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    if final_model_published(output_dir, step):
        how = "complete (stopped early):" if stopped_early(state) else "complete:"
        logger.warning(
            "Training is already %s %s is step %d of %d%s. The model in %s is left as it is. To train again "
            "pass --resume_from_checkpoint false (or --overwrite_output_dir); to go on, a larger --max_steps.",
            how, checkpoint, step, state.get("max_steps", step),
            f" (the final model is the best checkpoint, {weights})" if weights != checkpoint else "", output_dir,
        )
    else:
        logger.warning("Training is complete (%s) but the final model was not published (cut off while saving): "
                       "publishing it now from that checkpoint.", checkpoint)
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results = {"global_step": step, "epoch": state.get("epoch"), "published_from": str(checkpoint),
                   **({"last_logged_loss": losses[-1]} if losses else {})}  # fmt: skip
        with disk_errors(output_dir):
            save_final_model(trainer)
            trainer.save_state()
            trainer.save_metrics("train", results)  # the train_results.json of this model, not an earlier run's
        return results
    previous = Path(output_dir) / "train_results.json"
    try:
        return json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"global_step": step}


def evaluate_and_report(trainer: Any, metrics: Any) -> dict[str, float]:
    """Evaluate once on the trainer's eval dataset; log and save the metrics and write one line per utterance to
    eval_predictions.jsonl.

    ``metrics`` is the Trainer's compute_metrics object: it holds the references, and after prediction the
    ``hypotheses``.
    """
    eval_dataset, references = trainer.eval_dataset, metrics.references
    output = trainer.predict(eval_dataset, metric_key_prefix="eval")
    results = dict(output.metrics)
    trainer.log_metrics("eval", results)
    with disk_errors(trainer.args.output_dir):
        trainer.save_metrics("eval", results)
    if trainer.is_world_process_zero():
        rows = utterance_report(eval_dataset.ids, references, metrics.hypotheses, **metrics.normalized_forms(),
                                outputs=getattr(metrics, "outputs", None))
        rows = in_dataset_order(rows, eval_dataset)
        with disk_errors(trainer.args.output_dir):
            write_jsonl(rows, Path(trainer.args.output_dir) / PREDICTIONS_FILE)
        worst = sorted(rows, key=lambda row: row["errors"], reverse=True)[:3]
        for row in worst:
            if row["errors"]:
                logger.info(
                    "  %d errors in %s: ref=%r hyp=%r", row["errors"], row["id"], row["reference"], row["hypothesis"]
                )
        logger.info("Per-utterance results: %s", Path(trainer.args.output_dir) / PREDICTIONS_FILE)
    return results


def in_dataset_order(rows: list[dict[str, Any]], eval_dataset: Any) -> list[dict[str, Any]]:
    """Per-utterance rows of the (longest-first) evaluation back in the dataset's order."""
    places = getattr(eval_dataset, "rows", None)
    if places is None or DATASET_ROW not in places.column_names:
        return rows
    return [row for _, row in sorted(zip(places[DATASET_ROW], rows, strict=True), key=lambda pair: pair[0])]
