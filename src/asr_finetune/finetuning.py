"""The steps both fine-tuning scripts (CTC and seq2seq) share, in the order they run.

1. :func:`start`: arguments (read once), launch environment, backend, start-up checks, the checkpoint to resume.
3. :func:`load_splits`: the train/eval splits, checked and filtered (headers only).
5. :func:`finish_data`: log what was kept and dropped, refuse an emptied split, write data_report.json.
6. :func:`build_trainer`: datasets that decode on the fly, and the backend's Trainer.
7. :func:`train_evaluate_and_report`: train (or report a finished run), publish the final model, evaluate with a
   per-utterance report, write the model card.

The task-specific steps (tokenizer, model, labels) live in :mod:`asr_finetune.ctc` and :mod:`asr_finetune.seq2seq`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .checkpoints import checkpoint_problem, read_state, resume_point
from .data import DATA_REPORT_FILE, DropCounts, log_splits, prepare_rows, prepare_split, write_data_report
from .errors import DataError
from .files import write_json, write_jsonl
from .memory import peak_memory
from .metrics import utterance_report
from .outputs import PARTIAL_DIR, publish_files, write_model_card
from .packing import speech_dataset_over
from .run import check_hub_access, disk_errors

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "eval_predictions.jsonl"
DATASET_ROW = "dataset_row"
"""Column of the evaluation split: each clip's row in the dataset (evaluation runs longest first)."""


@dataclass
class FineTuning:
    """A fine-tuning run as start-up left it: the parsed argument groups and what was decided from them."""

    model_args: Any
    data_args: Any
    batching_args: Any
    streaming_args: Any
    training_args: Any
    backend: Any
    argv: list[str]
    resume: str | None
    pretrained: dict[str, Any]
    dtype: Any
    run_eval: bool

    @property
    def is_main_process(self) -> bool:
        return self.training_args.process_index == 0


def start(task: ModuleType, argv: Sequence[str] | None, streaming: bool = False) -> FineTuning:
    """Step 1 of both scripts: everything that can be checked before any data or model is touched.

    ``task`` is :mod:`asr_finetune.ctc` or :mod:`asr_finetune.seq2seq`: its ``ARGUMENTS`` and ``TRAINER``.
    ``streaming`` turns ``--streaming`` on (the ``*_streaming.py`` scripts).
    """
    from .args import CommandLine, parse_args
    from .backends import adapt_training_arguments, select_backend
    from .launch import prepare_launch_environment, set_cpu_threads
    from .logs import setup_logging
    from .modeling import hub_kwargs, weights_dtype
    from .streaming import check_streaming_flags

    setup_logging()
    prepare_launch_environment()
    command = CommandLine.read(argv)
    backend = select_backend(command, seq2seq=task.TRAINER == "seq2seq_trainer")
    model_args, data_args, batching_args, streaming_args, training_args = parse_args(
        (*task.ARGUMENTS, backend.arguments_class), command
    )
    streaming_args.streaming = streaming_args.streaming or streaming
    setup_logging(training_args)
    set_cpu_threads(training_args.dataloader_num_workers)
    check_streaming_flags(streaming_args, training_args, command.flags())
    batching_args.check(streaming_args.streaming)
    adapt_training_arguments(training_args)
    run_eval = evaluation_requested(training_args)
    dtype = weights_dtype(model_args.torch_dtype, training_args.do_train)
    resume = prepare_run(training_args)
    pretrained = hub_kwargs(model_args.cache_dir, model_args.model_revision, data_args.token,
                            data_args.trust_remote_code)
    return FineTuning(model_args, data_args, batching_args, streaming_args, training_args, backend, command.argv,
                      resume, pretrained, dtype, run_eval)


def evaluation_requested(training_args: Any) -> bool:
    """True for ``--do_eval`` or an ``--eval_strategy`` other than "no" (evaluation during training)."""
    return bool(training_args.do_eval) or str(training_args.eval_strategy) not in ("no", "IntervalStrategy.NO")


def finish_data(
    run: FineTuning, splits: dict[str, Any], drops: dict[str, DropCounts], unknown: dict[str, Any], source: str
) -> None:
    """Step 5's end: log what each split kept and dropped, refuse an emptied split, write data_report.json.

    A streamed train split is counted as it is read: its figures reach data_report.json when training ends."""
    from .streaming import is_stream

    streams = {name: split for name, split in splits.items() if is_stream(split)}
    splits = {name: split for name, split in splits.items() if name not in streams}
    for name, stream in streams.items():
        logger.info("%s: streamed from %s, %d shard(s), in blocks of %d rows; what it drops is counted as it is "
                    "read (train_results.json, data_report.json).", name, stream.label, stream.stream.n_shards,
                    stream.buffer_size)
    log_splits(splits, drops)
    require_rows(splits, drops)
    if run.is_main_process:
        missing = {name: {"characters_missing_from_vocab": dict(unknown.get(name, {}))} for name in splits}
        top = {name: {"streamed": True, "shards": stream.stream.n_shards} for name, stream in streams.items()}
        write_data_report(run.training_args.output_dir, splits, drops, missing, vocab=source, **top)


def build_trainer(
    run: FineTuning,
    model: Any,
    splits: dict[str, Any],
    feature_extractor: Any,
    processor: Any,
    collator: Any,
    metrics: Any,
    **trainer_kwargs: Any,
) -> Any:
    """Step 6: datasets that decode audio on the fly in the loader, and the backend's Trainer over them."""
    from .feature_encoder import speed_up_feature_encoders
    from .streaming import is_stream

    datasets_ = {name: speech_dataset(run, split, feature_extractor) for name, split in splits.items()}
    log_model(model)
    speed_up_feature_encoders(model, run.training_args.device.type)
    trainer = run.backend.trainer_class(
        model=model,
        args=run.training_args,
        data_collator=collator,
        train_dataset=datasets_.get("train"),
        eval_dataset=datasets_.get("eval"),
        processing_class=processor,
        compute_metrics=metrics,
        batching=run.batching_args,
        on_nonfinite_loss=run.data_args.on_nonfinite_loss,
        **trainer_kwargs,
    )
    if is_stream(splits.get("train")):
        from .streaming import StreamStateCallback

        trainer.add_callback(StreamStateCallback(datasets_["train"].progress))
    return trainer


def log_model(model: Any) -> None:
    """One line on what trains: architecture, attention kernel (sdpa where transformers supports it), weights."""
    weights = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    logger.info("Model: %s, attention %s, %.1fM weights (%.1fM trained), %s.", type(model).__name__, attention,
                weights / 1e6, trained / 1e6, next(model.parameters()).dtype)


def speech_dataset(run: FineTuning, split: Any, feature_extractor: Any) -> Any:
    """The torch dataset over a prepared split: a stream, packs of utterances, or rows one by one."""
    from .streaming import is_stream

    if is_stream(split):
        return stream_dataset(run, split, feature_extractor)
    return speech_dataset_over(split, feature_extractor, run.data_args.audio_column_name, run.data_args.on_bad_row)


def stream_dataset(run: FineTuning, split: Any, feature_extractor: Any) -> Any:
    """This process's batches of a streamed train split, continuing where ``run.resume`` stopped."""
    from .backends import wants_length_grouping
    from .streaming import SpeechStream, StreamPlan, saved_progress

    args = run.training_args
    plan = StreamPlan(
        batch_size=args.per_device_train_batch_size, seed=args.data_seed if args.data_seed is not None else args.seed,
        rank=args.process_index, world_size=args.world_size, workers=args.dataloader_num_workers,
        batching=run.batching_args, group_by_length=wants_length_grouping(args),
    )
    return SpeechStream(split, plan, feature_extractor, run.data_args.audio_column_name, run.data_args.on_bad_row,
                        resume=saved_progress(run.resume, args.process_index))


def train_evaluate_and_report(
    run: FineTuning, trainer: Any, metrics: Any, card_title: str, card_details: dict[str, Any], script: str
) -> dict[str, Any]:
    """Steps 7-8: train (resuming, or reporting a finished run), evaluate with eval_predictions.jsonl, model card."""
    results: dict[str, Any] = {}
    if run.training_args.do_train:
        results.update(train_and_save(trainer, run.resume))
    if run.training_args.do_eval:
        results.update(evaluate_and_report(trainer, metrics))
    if run.is_main_process:
        write_model_card(
            run.training_args.output_dir,
            title=card_title,
            details={
                "base model": run.model_args.model_name_or_path or f"from scratch ({run.model_args.config_name})",
                "dataset": run.data_args.dataset_name,
                "train split": run.data_args.train_split_name,
                "eval split": run.data_args.eval_split_name,
                **card_details,
            },
            metrics={k: v for k, v in results.items() if k.startswith("eval_")},
            argv=run.argv,
            script=script,
        )
    return results


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
    totals.update(_stream_totals(trainer))
    totals.update(peak_memory())
    metrics.update({f"train_{name}": value for name, value in totals.items()})
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
    from transformers import TrainerState

    output_dir = trainer.args.output_dir
    step = state.get("global_step", 0)
    trainer._load_from_checkpoint(checkpoint)  # private in 4.55 and 5.24 alike: weights as the Trainer resumes them
    # The run's history, so what follows (evaluation, training_curves.png) continues it instead of starting at step 0.
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
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
            trainer.save_state()
    previous = Path(output_dir) / "train_results.json"
    try:
        return json.loads(previous.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"global_step": step}


def require_rows(splits: dict[str, Any], drops: dict[str, DropCounts]) -> None:
    """Stop at start when filtering left a split empty (an evaluation of nothing reports no figures)."""
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(
                f"No usable rows left in the {name} split after filtering (dropped: {drops[name].summary()}). "
                "See data_report.json; relax the filters or choose another split."
            )


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
    trainer.save_metrics("eval", results)
    if trainer.is_world_process_zero():
        rows = utterance_report(eval_dataset.ids, references, metrics.hypotheses, **metrics.normalized_forms())
        rows = in_dataset_order(rows, eval_dataset)
        write_jsonl(rows, Path(trainer.args.output_dir) / PREDICTIONS_FILE)
        worst = sorted(rows, key=lambda row: row["errors"], reverse=True)[:3]
        for row in worst:
            if row["errors"]:
                logger.info(
                    "  %d errors in %s: ref=%r hyp=%r", row["errors"], row["id"], row["reference"], row["hypothesis"]
                )
        logger.info("Per-utterance results: %s", Path(trainer.args.output_dir) / PREDICTIONS_FILE)
    return results


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
    return resume_point(training_args.output_dir, training_args.resume_from_checkpoint,
                        training_args.process_index == 0)


def load_splits(
    run: FineTuning, normalize: Callable[[list[str]], list[str]]
) -> tuple[dict[str, Any], dict[str, DropCounts]]:
    """Step 3: the "train" split (when training) and the "eval" split (when evaluating), prepared by the main process
    first. With ``--streaming`` the train split is a :class:`asr_finetune.streaming.StreamingSplit` (opened, not
    read: its blocks are prepared as they are trained on) and the eval split is read from its stream."""
    from .streaming import load_eval_rows, load_stream

    data_args, training_args, cache_dir = run.data_args, run.training_args, run.model_args.cache_dir
    config = data_args.split_config(
        text_column=data_args.text_column_name,
        id_column=data_args.id_column_name,
        config_name=data_args.dataset_config_name,
        cache_dir=cache_dir,
        token=data_args.token,
    )
    streaming = run.streaming_args.streaming
    wanted = []
    if training_args.do_train:
        wanted.append(("train", data_args.train_split_name, data_args.max_train_samples))
    if run.run_eval:
        wanted.append(("eval", data_args.eval_split_name, data_args.max_eval_samples))
    splits, drops = {}, {}
    with training_args.main_process_first(desc="dataset preparation"):
        for name, expression, max_samples in wanted:
            if streaming and name == "train":
                splits[name], drops[name] = load_stream(data_args, run.streaming_args, config, normalize,
                                                        cache_dir), DropCounts()
                continue
            # Evaluation keeps long recordings: they are decoded in chunks (asr_finetune.longform), not dropped.
            split_config = config if name == "train" else dataclasses.replace(config, max_duration=None)
            if streaming:
                label = f"{data_args.dataset_name} split {expression!r} (from its stream)"
                splits[name], drops[name] = prepare_rows(load_eval_rows(data_args, cache_dir), split_config,
                                                         normalize, label)
                continue
            splits[name], drops[name] = prepare_split(split_config, expression, normalize, max_samples=max_samples)
    if "eval" in splits:
        splits["eval"] = longest_first(splits["eval"])
    return splits, drops


def longest_first(split: Any) -> Any:
    """The evaluation split sorted by duration, longest first: each batch holds clips of one length (little
    padding, generation of similar lengths) and a batch too big for memory fails at once. ``dataset_row`` keeps
    each clip's place in the dataset; eval_predictions.jsonl is written in that order."""
    split = split.add_column(DATASET_ROW, list(range(len(split))))
    durations = split["duration"]
    order = sorted(range(len(split)), key=lambda i: -durations[i])
    return split.select(order)


def in_dataset_order(rows: list[dict[str, Any]], eval_dataset: Any) -> list[dict[str, Any]]:
    """Per-utterance rows of the (longest-first) evaluation back in the dataset's order."""
    places = getattr(eval_dataset, "rows", None)
    if places is None or DATASET_ROW not in places.column_names:
        return rows
    return [row for _, row in sorted(zip(places[DATASET_ROW], rows, strict=True), key=lambda pair: pair[0])]
