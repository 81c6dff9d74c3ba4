"""Training on a stream: corpora bigger than the disk, read shard by shard, on any number of processes and nodes,
resumable mid-stream (``--streaming``).

The train split is a ``datasets.IterableDataset``: a Hub dataset opened with ``streaming=True``, or a local folder
of shards (``SPLIT/*.parquet``, the Hub's own format, or WebDataset ``SPLIT/*.tar``). Each process reads its own
shards (``datasets.distributed.split_dataset_by_node``), each loader worker its own share of those (datasets splits
shards between workers). The shard order is reshuffled every epoch.

A worker reads its rows in blocks of ``--shuffle_buffer_size``. A block goes through the very preparation of a
map-style split (:func:`asr_finetune.data.loading.prepare_rows`: header checks, bad rows, text normalisation, duration
filters, then the task's labels), is shuffled and cut into batches (duration buckets with ``--max_batch_duration``),
and decoded on the fly (:class:`asr_finetune.data.speech_dataset.SpeechDataset`). What a block drops is counted.

Resuming: every batch carries its position (epoch, block, batch in block, and the reader's state at the block's
start). A checkpoint records, per process and loader worker, the position of the last batch trained on (in
trainer_state.json, written last, so a checkpoint is never complete without it). A rerun restores the reader state,
re-reads that one block (at most ``--shuffle_buffer_size`` rows; no batch trained on is trained again) and continues
with the next batch: the batches are those of the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.table import InMemoryTable

from asr_finetune.data.arguments import DataArguments
from asr_finetune.data.loading import SplitConfig, check_columns, load_hub, prepare_rows
from asr_finetune.data.local import parse_split_expression
from asr_finetune.data.report import DropCounts
from asr_finetune.data.shard_check import ShardCheck, check_shards
from asr_finetune.errors import DataError, UsageError

logger = logging.getLogger(__name__)

SHARD_BUILDERS = {".parquet": "parquet", ".tar": "webdataset"}
"""Local shard formats: parquet files with embedded audio (the Hub's format) and WebDataset tar files."""
AUDIO_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "opus")
POSITION_KEY = "stream_position"
"""Batch key carrying where the batch came from in the stream; taken out before the model sees the batch."""
SKIP = "skip"
"""What a loader worker yields first on a resume when the next batch is due from a later worker (see
:class:`StreamLoader`)."""
EPOCH_FLAGS = ("num_train_epochs",)


@dataclass
class StreamingArguments:
    """Flags of streaming training (``--streaming``): the train split is read as a stream, never downloaded whole."""

    _argument_group_name = "Streaming (--streaming)"

    streaming: bool = field(
        default=False,
        metadata={"help": "Read the train split as a stream (Hub streaming, or local SPLIT/*.parquet / *.tar shards): "
                  "for corpora bigger than the disk. Needs --max_steps."},
    )
    shuffle_buffer_size: int = field(
        default=500,
        metadata={"help": "Rows read, shuffled and batched together (a block); also the most a resume re-reads."},
    )
    vocab_from_first_n: int | None = field(
        default=None,
        metadata={"help": "CTC without --tokenizer_name_or_path: build the vocab from the first N training rows."},
    )
    restart_stream: bool = field(
        default=False,
        metadata={"help": "On resume, read the stream again from its start (the model, optimizer and step count "
                  "resume): for a shard list that changed since the checkpoint."},
    )

    def __post_init__(self) -> None:
        if self.shuffle_buffer_size < 1:
            raise UsageError(f"--shuffle_buffer_size {self.shuffle_buffer_size}: give at least 1.")


def check_streaming_flags(streaming: StreamingArguments, training_args: Any, given: dict[str, Any]) -> None:
    """A stream has no length: refuse at start what would need one, naming the flag."""
    if not streaming.streaming:
        for name in ("shuffle_buffer_size", "vocab_from_first_n", "restart_stream"):
            if name in given:
                raise UsageError(f"--{name} goes with --streaming (or the *_streaming.py scripts).")
        return
    if not training_args.do_train:
        raise UsageError("--streaming streams the train split: add --do_train (evaluation alone reads its split).")
    if training_args.max_steps is None or training_args.max_steps <= 0:
        raise UsageError("--streaming needs --max_steps N: a stream has no length, so epochs cannot be counted.")
    epoch_based = [f"--{name}" for name in EPOCH_FLAGS if name in given]
    epoch_based += [f"--{name} epoch" for name in ("eval_strategy", "save_strategy", "logging_strategy")
                    if str(getattr(training_args, name, "")).lower().endswith("epoch")]
    if epoch_based:
        raise UsageError(f"{', '.join(epoch_based)}: a stream has no epochs to count; use --max_steps and the "
                         "*_steps flags (--eval_steps, --save_steps, --logging_steps).")
    training_args.ignore_data_skip = True  # the stream resumes at its recorded position, without skipping batches


# ---------------------------------------------------------------------------------------------- sources


def local_shards(root: Path, split: str) -> tuple[str, list[str]] | None:
    """(datasets builder, files) for ``root/split/*.parquet`` or ``*.tar``; None when there are no shards."""
    folder = root / split
    for suffix, builder in SHARD_BUILDERS.items():
        files = sorted(str(path) for path in folder.glob(f"*{suffix}"))
        if files:
            return builder, files
    return None


@dataclass
class OpenedStream:
    """A split expression opened as one stream, with the shards it reads (local shards: their paths relative to
    the dataset folder; a Hub stream: none known) and those left out (path -> why)."""

    stream: datasets.IterableDataset
    shards: list[str]
    left_out: dict[str, str]


def open_stream(data_args: DataArguments, expression: str, cache_dir: str | None) -> OpenedStream:
    """The split expression (``train`` or ``train+validation``; no slices) as one stream with the columns the
    map-style path has: the audio column (undecoded ``{"bytes", "path"}``), the text column, and ``id``. Local
    shards are checked first (:mod:`asr_finetune.data.shard_check`)."""
    parts = parse_split_expression(expression)
    if any(part.start or part.stop for part in parts):
        raise UsageError(f"--streaming reads whole splits; {expression!r} slices one. Use --max_train_samples N "
                         "to train on the first N rows.")
    opened = [_open_split(data_args, part.name, cache_dir) for part in parts]
    streams = [stream for stream, _ in opened]
    checks = [check for _, check in opened if check is not None]
    root = Path(data_args.dataset_name).expanduser()
    shards = [str(Path(path).relative_to(root)) for check in checks for path in check.files]
    left_out = {path: why for check in checks for path, why in check.left_out.items()}
    stream = streams[0] if len(streams) == 1 else datasets.concatenate_datasets(streams)
    return OpenedStream(stream, shards, left_out)


def _open_split(
    data_args: DataArguments, split: str, cache_dir: str | None
) -> tuple[datasets.IterableDataset, ShardCheck | None]:
    root = Path(data_args.dataset_name).expanduser()
    label = f"{data_args.dataset_name} split {split!r}"
    check = None
    if root.exists():
        found = local_shards(root, split) if root.is_dir() else None
        if found is None:
            splits = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DataError(
                f"{label}: --streaming reads local shards, {root}/{split}/*.parquet or *.tar (folders here: "
                f"{', '.join(splits) or 'none'}). Without --streaming the folder is read as a map-style dataset."
            )
        builder, files = found
        check = check_shards(builder, files, data_args.audio_column_name, data_args.text_column_name,
                             data_args.on_bad_row, label, (*AUDIO_EXTENSIONS, data_args.audio_column_name))
        stream = datasets.load_dataset(builder, data_files={split: check.files}, split=split, streaming=True)
    else:
        stream = load_hub(data_args.dataset_name, split, data_args.dataset_config_name, cache_dir, data_args.token,
                          data_args.trust_remote_code, streaming=True)
    return _standard_columns(stream, data_args, label), check


def _standard_columns(
    stream: datasets.IterableDataset, data_args: DataArguments, label: str
) -> datasets.IterableDataset:
    columns = list(stream.column_names or next(iter(stream.take(1))).keys())
    audio, text = data_args.audio_column_name, data_args.text_column_name
    if audio not in columns:  # WebDataset: the audio sits under its file extension, as raw file bytes
        found = [column for column in columns if column in AUDIO_EXTENSIONS]
        if found:
            extension = found[0]
            # Not as Audio: datasets would pass the bytes through torchcodec, which this torch cannot load.
            stream = stream.cast_column(extension, datasets.Value("binary")).map(
                functools.partial(_file_bytes, audio, extension), remove_columns=[extension]
            )
            columns = [c for c in columns if c != extension] + [audio]
    elif stream.features is not None:  # first, while the features are known: nothing decodes before the loader
        stream = stream.cast_column(audio, datasets.Audio(decode=False))
    if text not in columns and "txt" in columns:
        stream, columns = stream.rename_column("txt", text), [text if c == "txt" else c for c in columns]
    elif text not in columns and "json" in columns:
        # "" for a sample without one (counted as an empty transcript): None would make a column of nulls.
        stream = stream.map(lambda row: {text: (row["json"] or {}).get(text) or ""}, remove_columns=["json"])
        columns = [c for c in columns if c != "json"] + [text]
    if "__key__" in columns and data_args.id_column_name not in columns:
        stream = stream.rename_column("__key__", data_args.id_column_name)
        columns = [data_args.id_column_name if c == "__key__" else c for c in columns]
    check_columns(columns, {audio: "--audio_column_name", text: "--text_column_name"}, label)
    return stream.select_columns([c for c in (audio, text, data_args.id_column_name) if c in columns])


def _file_bytes(audio: str, extension: str, row: dict[str, Any]) -> dict[str, Any]:
    value = row[extension]
    data = (value.get("bytes") if isinstance(value, dict) else value) or b""  # no audio: empty, counted as such
    path = (value.get("path") if isinstance(value, dict) else None) or f"{row.get('__key__', 'clip')}.{extension}"
    return {audio: {"bytes": data, "path": path}}


# ---------------------------------------------------------------------------------------------- the split


BlockStep = Callable[[datasets.Dataset, DropCounts], datasets.Dataset]


@dataclass
class StreamingSplit:
    """The train split as a stream, and what each block of it goes through: the map-style preparation
    (``split_config``, ``normalize``) and then the task's own ``steps`` (labels, model-specific filters)."""

    stream: datasets.IterableDataset
    split_config: SplitConfig
    normalize: Callable[[list[str]], list[str]] | None
    label: str
    buffer_size: int
    max_samples: int | None = None
    first_n: int | None = None
    steps: list[BlockStep] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    """The shards read (local: paths in the dataset folder; recorded in each checkpoint's stream state)."""
    left_out: dict[str, str] = field(default_factory=dict)
    """Shards left out at start (path -> why): unreadable ones under --on_bad_row skip, and empty ones."""
    pack: Callable[[datasets.Dataset], Any] | None = None
    """``--pack_utterances``: each prepared block -> :class:`asr_finetune.data.packing.Packs` (packed within the
    block)."""

    def then(self, step: BlockStep) -> StreamingSplit:
        """This split with one more step on every block (e.g. the task's labels)."""
        return dataclasses.replace(self, steps=[*self.steps, step])

    def prepare(self, rows: pa.Table, where: str) -> tuple[datasets.Dataset, DropCounts]:
        """One block of raw rows -> the rows a map-style split would keep, with what was dropped and why."""
        # Without the shards' feature metadata: its Audio feature would decode (through torchcodec) on access.
        block = datasets.Dataset(InMemoryTable(rows.replace_schema_metadata(None)))
        prepared, drops = prepare_rows(block, self.split_config, self.normalize, f"{self.label}, {where}")
        for step in self.steps:
            if len(prepared) == 0:
                break
            prepared = step(prepared, drops)
        return prepared, drops

    def texts(self) -> list[str]:
        """The normalised transcripts of the first ``first_n`` rows (a vocab from a stream)."""
        if not self.first_n:
            return []
        column = self.split_config.text_column
        raw = [row[column] or "" for row in self.stream.select_columns([column]).take(self.first_n)]
        return self.normalize(raw) if self.normalize else raw


def is_stream(split: Any) -> bool:
    return isinstance(split, StreamingSplit)


def load_stream(
    data_args: DataArguments, streaming: StreamingArguments, split_config: SplitConfig,
    normalize: Callable[[list[str]], list[str]], cache_dir: str | None,
) -> StreamingSplit:
    """The train split of ``--streaming``, opened (its shards and columns checked) but not read."""
    opened = open_stream(data_args, data_args.train_split_name, cache_dir)
    stream = opened.stream
    if data_args.max_train_samples is not None:
        stream = stream.take(data_args.max_train_samples)
    if split_config.audio_check == "tail":
        # Each clip of a stream is decoded whole moments after its header is read: the decoder finds a cut file
        # (named, or skipped with --on_bad_row skip), so the header check need not read the tail first.
        split_config = dataclasses.replace(split_config, audio_check="header")
    return StreamingSplit(stream, split_config, normalize, f"{data_args.dataset_name} split "
                          f"{data_args.train_split_name!r}", streaming.shuffle_buffer_size,
                          first_n=streaming.vocab_from_first_n, shards=opened.shards, left_out=opened.left_out)


def load_eval_rows(data_args: DataArguments, cache_dir: str | None) -> tuple[datasets.Dataset, dict[str, str]]:
    """The evaluation split of a streaming run, read from its stream into memory (``--max_eval_samples`` rows, or
    all): evaluation needs a fixed set in a fixed order. Also the shards left out (path -> why)."""
    opened = open_stream(data_args, data_args.eval_split_name, cache_dir)
    stream = opened.stream
    if data_args.max_eval_samples is not None:
        stream = stream.take(data_args.max_eval_samples)
    else:
        logger.warning("--streaming: reading the whole eval split %r into memory; --max_eval_samples N caps it.",
                       data_args.eval_split_name)
    return datasets.Dataset.from_list(list(stream)), opened.left_out
