"""The steps both fine-tuning scripts (CTC and seq2seq) share, in the order they run.

1. :func:`start`: arguments (read once), launch environment, backend, start-up checks, the checkpoint to resume.
3. :func:`load_splits`: the train/eval splits, checked and filtered (headers only).
5. :func:`finish_data`: log what was kept and dropped, refuse an emptied split, write data_report.json.
6. :func:`build_trainer`: datasets that decode on the fly, and the backend's Trainer.
7. :func:`train_evaluate_and_report`: train (or report a finished run), publish the final model, evaluate with a
   per-utterance report, write the model card.

The task-specific steps (tokenizer, model, labels) live in :mod:`asr_finetune.tasks.ctc` and
:mod:`asr_finetune.tasks.seq2seq`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asr_finetune.args import CommandLine, parse_args
from asr_finetune.data.loading import prepare_rows, prepare_split
from asr_finetune.data.packing import speech_dataset_over
from asr_finetune.data.report import DropCounts, log_splits, write_data_report
from asr_finetune.data.stream_loader import SpeechStream, StreamPlan, StreamStateCallback, saved_progress
from asr_finetune.data.streaming import check_streaming_flags, is_stream, load_eval_rows, load_stream
from asr_finetune.errors import DataError
from asr_finetune.logs import setup_logging
from asr_finetune.models.adapters import DEFAULT_TARGETS, AdapterArguments
from asr_finetune.models.feature_encoder import speed_up_feature_encoders
from asr_finetune.models.loading import hub_kwargs, weights_dtype
from asr_finetune.tasks.task import Task
from asr_finetune.training.backends import (
    GAUDI_HELP,
    adapt_training_arguments,
    check_precision,
    describe_world,
    select_backend,
)
from asr_finetune.training.checkpoints import resume_point
from asr_finetune.training.early_stopping import choose_best_by, early_stopping_callbacks
from asr_finetune.training.launch import prepare_launch_environment, set_cpu_threads
from asr_finetune.training.model_card import (
    RUNTIME_KEYS,
    best_checkpoint_line,
    hyperparameters,
    log_history_of,
    write_model_card,
)
from asr_finetune.training.optimizer_state import check_optimizer
from asr_finetune.training.outputs import check_hub_access, disk_errors
from asr_finetune.training.run_flags import check_resume_flags, run_flags
from asr_finetune.training.run_lock import lock_output_dir
from asr_finetune.training.sharding import check_resume_sharding, check_sharding
from asr_finetune.training.train_and_evaluate import DATASET_ROW, evaluate_and_report, finished_state, train_and_save
from asr_finetune.training.trainers import wants_length_grouping

logger = logging.getLogger(__name__)


@dataclass
class FineTuning:
    """A fine-tuning run as start-up left it: the parsed argument groups and what was decided from them."""

    model_args: Any
    data_args: Any
    batching_args: Any
    streaming_args: Any
    stopping_args: Any
    training_args: Any
    backend: Any
    argv: list[str]
    resume: str | None
    pretrained: dict[str, Any]
    dtype: Any
    run_eval: bool
    run_flags: dict[str, Any]
    task_groups: tuple[Any, ...] = ()
    """The task's own argument groups after the shared ones (adapters; CTC: the n-gram LM's). Each has
    ``check(training_args, streaming)``, run at start."""

    def group(self, kind: type) -> Any:
        """The parsed argument group of class ``kind``."""
        return next(group for group in self.task_groups if isinstance(group, kind))

    @property
    def is_main_process(self) -> bool:
        return self.training_args.process_index == 0


def start(task: Task, argv: Sequence[str] | None, streaming: bool = False) -> FineTuning:
    """Step 1 of both scripts: everything that can be checked before any data or model is touched.

    ``task`` is :data:`~asr_finetune.tasks.ctc.CTC` or :data:`~asr_finetune.tasks.seq2seq.SEQ2SEQ`.
    ``streaming`` turns ``--streaming`` on (the ``*_streaming.py`` scripts).
    """

    setup_logging()
    prepare_launch_environment()
    command = CommandLine.read(argv)
    backend = select_backend(command, seq2seq=task.seq2seq)
    gaudi_help = {} if backend.name == "habana" else {"Gaudi HPUs (optimum-habana), with --use_habana": GAUDI_HELP}
    *groups, training_args = parse_args((*task.arguments, backend.arguments_class), command, gaudi_help)
    model_args, data_args, batching_args, streaming_args, stopping_args, *task_groups = groups
    streaming_args.streaming = streaming_args.streaming or streaming
    setup_logging(training_args)
    set_cpu_threads(training_args.dataloader_num_workers)
    check_streaming_flags(streaming_args, training_args, command.flags())
    batching_args.check(streaming_args.streaming)
    adapt_training_arguments(training_args)
    check_optimizer(training_args)
    check_sharding(training_args)
    choose_best_by(training_args, stopping_args, command.flags(), data_args.eval_metrics,
                   normalized=scores_normalized_text(data_args))
    run_eval = evaluation_requested(training_args)
    dtype = weights_dtype(model_args.torch_dtype, training_args.do_train)
    for group in task_groups:  # before prepare_run, which may remove old checkpoints
        group.check(training_args, streaming_args.streaming)
    adapters = next((group for group in task_groups if isinstance(group, AdapterArguments)), None)
    resume = prepare_run(training_args)
    check_resume_sharding(resume, training_args)
    flags = {**run_flags(task.name, model_args, training_args), **adapter_flags(adapters)}
    if resume:
        done = finished_state(training_args, resume, early_stopping=stopping_args.early_stopping_patience is not None)
        check_resume_flags(resume, flags, training_on=done is None)
    pretrained = hub_kwargs(model_args.cache_dir, model_args.model_revision, data_args.token,
                            data_args.trust_remote_code)
    return FineTuning(model_args, data_args, batching_args, streaming_args, stopping_args, training_args, backend,
                      command.argv, resume, pretrained, dtype, run_eval, flags, tuple(task_groups))


def adapter_flags(adapters: AdapterArguments | None) -> dict[str, Any]:
    """The run-defining adapter flags (run_flags.json): whether adapters train, and with --use_peft their shape."""
    if adapters is None:
        return {}
    if not adapters.use_peft:
        return {"use_peft": False}
    return {"use_peft": True, "lora_r": adapters.lora_r, "lora_alpha": adapters.lora_alpha,
            "lora_target_modules": " ".join(adapters.lora_target_modules or DEFAULT_TARGETS)}


def scores_normalized_text(data_args: Any) -> bool:
    """Whether evaluation also reports eval_normalized_wer: unless --eval_normalizer none, or a phoneme run left at
    its default."""
    if data_args.eval_normalizer is not None:
        return data_args.eval_normalizer != "none"
    return not getattr(data_args, "phoneme_language", None)


def evaluation_requested(training_args: Any) -> bool:
    """True for ``--do_eval`` or an ``--eval_strategy`` other than "no" (evaluation during training)."""
    return bool(training_args.do_eval) or str(training_args.eval_strategy) not in ("no", "IntervalStrategy.NO")


def finish_data(
    run: FineTuning, splits: dict[str, Any], drops: dict[str, DropCounts], unknown: dict[str, Any], source: str
) -> None:
    """Step 5's end: log what each split kept and dropped, refuse an emptied split, write data_report.json.

    A streamed train split is counted as it is read: its figures reach data_report.json when training ends."""

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
        top = {name: {"streamed": True, "shards": stream.stream.n_shards,
                      **({"shards_left_out": stream.left_out} if stream.left_out else {})}
               for name, stream in streams.items()}
        with disk_errors(run.training_args.output_dir):
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
        run_flags=run.run_flags,
        callbacks=early_stopping_callbacks(run.stopping_args),
        **trainer_kwargs,
    )
    if is_stream(splits.get("train")):
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

    if is_stream(split):
        return stream_dataset(run, split, feature_extractor)
    return speech_dataset_over(split, feature_extractor, run.data_args.audio_column_name, run.data_args.on_bad_row)


def stream_dataset(run: FineTuning, split: Any, feature_extractor: Any) -> Any:
    """This process's batches of a streamed train split, continuing where ``run.resume`` stopped."""

    args = run.training_args
    plan = StreamPlan(
        batch_size=args.per_device_train_batch_size, seed=args.data_seed if args.data_seed is not None else args.seed,
        rank=args.process_index, world_size=args.world_size, workers=args.dataloader_num_workers,
        batching=run.batching_args, group_by_length=wants_length_grouping(args),
    )
    return SpeechStream(split, plan, feature_extractor, run.data_args.audio_column_name, run.data_args.on_bad_row,
                        resume=saved_progress(run.resume, args.process_index),
                        restart=run.streaming_args.restart_stream)


def require_rows(splits: dict[str, Any], drops: dict[str, DropCounts]) -> None:
    """Stop at start when filtering left a split empty (an evaluation of nothing reports no figures)."""
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(
                f"No usable rows left in the {name} split after filtering (dropped: {drops[name].summary()}). "
                "See data_report.json; relax the filters or choose another split."
            )


def prepare_run(training_args: Any) -> str | None:
    """Start-up checks every Trainer run makes before any work: the device can do what the flags ask, one run per
    output_dir (a lock), the Hub reachable when pushing. Returns the checkpoint to resume from (None: start from
    the model); a fresh start removes the old checkpoints, so a later rerun cannot resume from the run replaced."""

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
    first. With ``--streaming`` the train split is a :class:`asr_finetune.data.streaming.StreamingSplit` (opened, not
    read: its blocks are prepared as they are trained on) and the eval split is read from its stream."""

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
            # Evaluation keeps long recordings: decoded in chunks (asr_finetune.evaluation.longform), not dropped.
            split_config = config if name == "train" else dataclasses.replace(config, max_duration=None)
            if streaming:
                label = f"{data_args.dataset_name} split {expression!r} (from its stream)"
                rows, left_out = load_eval_rows(data_args, cache_dir)
                splits[name], drops[name] = prepare_rows(rows, split_config, normalize, label)
                drops[name].shards_left_out = left_out
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


def train_evaluate_and_report(
    run: FineTuning, trainer: Any, metrics: Any, card_title: str, card_details: dict[str, Any], script: str,
    card_language: str | None = None,
    pipeline_kwargs: str = "",
    after_evaluation: Callable[[bool], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Steps 7-8: train (resuming, or reporting a finished run), evaluate with eval_predictions.jsonl, model card.

    ``after_evaluation(evaluated)``: the task's last step before the model card (CTC: decoding with an n-gram LM);
    what it returns joins the results."""
    results: dict[str, Any] = {}
    if run.training_args.do_train:
        results.update(train_and_save(trainer, run.resume))
    if run.training_args.do_eval:
        results.update(evaluate_and_report(trainer, metrics))
    if after_evaluation is not None:
        results.update(after_evaluation(bool(run.training_args.do_eval)))
    if run.is_main_process:
        args, data_args = run.training_args, run.data_args
        write_model_card(
            args.output_dir,
            title=card_title,
            details={
                "base model": run.model_args.model_name_or_path or f"from scratch ({run.model_args.config_name})",
                "dataset": data_args.dataset_name,
                "train split": data_args.train_split_name,
                "eval split": data_args.eval_split_name,
                **card_details,
            },
            metrics={k: v for k, v in results.items()
                     if k.startswith("eval_") and not k.endswith(RUNTIME_KEYS) and isinstance(v, int | float)},
            meta={"base_model": run.model_args.model_name_or_path, "dataset": data_args.dataset_name,
                  "dataset_config": data_args.dataset_config_name, "eval_split": data_args.eval_split_name,
                  "language": card_language},  # fmt: skip
            hyper=hyperparameters(args, args.world_size) if args.do_train else None,
            log_history=log_history_of(trainer.state, args.output_dir),
            best=best_checkpoint_line(trainer.state, args.metric_for_best_model) if args.do_train else None,
            argv=run.argv,
            script=script,
            pipeline_kwargs=pipeline_kwargs,
        )
    return results
