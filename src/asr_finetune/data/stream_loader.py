"""Reading a stream during training: per-process and per-worker shard plans, blocks prepared like a map-style
split, batches that carry their position, and the resume state checkpoints record."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets.distributed import split_dataset_by_node
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from asr_finetune.data.packing import speech_dataset_over
from asr_finetune.data.report import DropCounts
from asr_finetune.data.streaming import POSITION_KEY, SKIP, StreamingSplit
from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- batches


@dataclass
class StreamPlan:
    """How a process cuts its stream into batches."""

    batch_size: int
    seed: int
    rank: int
    world_size: int
    workers: int
    batching: Any = None
    group_by_length: bool = False

    def batches(self, durations: list[float], epoch: int, block: int, worker: int) -> list[list[int]]:
        """A block's batches (indices into the block), a fixed function of seed, epoch, block, rank and worker."""
        seed = int(np.random.SeedSequence([self.seed, epoch, block, self.rank, worker]).generate_state(1)[0])
        if self.batching is not None and self.batching.enabled:
            sampler = self.batching.sampler(durations, self.batch_size, seed=seed, num_replicas=1, rank=0)
            return [list(batch) for batch in sampler]
        rng = np.random.default_rng(seed)
        order = np.argsort(durations, kind="stable") if self.group_by_length else rng.permutation(len(durations))
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            rng.shuffle(batches)
        return batches


class SpeechStream(torch.utils.data.IterableDataset):
    """This process's batches of a :class:`StreamingSplit`, as lists of decoded items with their position.

    ``resume`` is this process's entry of a checkpoint's stream state (:class:`StreamProgress`), or None;
    ``restart`` reads the stream from its start all the same (``--restart_stream``).
    """

    def __init__(self, split: StreamingSplit, plan: StreamPlan, feature_extractor: Any, audio_column: str,
                 on_bad_row: str, resume: dict[str, Any] | None = None, restart: bool = False) -> None:
        self.split = split
        self.plan = plan
        self.feature_extractor = feature_extractor
        self.audio_column = audio_column
        self.on_bad_row = on_bad_row
        stream = split.stream.shuffle(seed=plan.seed, buffer_size=1)  # shard order per epoch; rows stay in order
        if plan.world_size > 1:
            if stream.n_shards % plan.world_size:
                logger.warning(
                    "%d shard(s) do not divide among %d processes: every process reads every shard and keeps its "
                    "share of the rows (nothing is trained twice, but each reads all). Use a multiple of %d "
                    "shards.", stream.n_shards, plan.world_size, plan.world_size)
            stream = split_dataset_by_node(stream, rank=plan.rank, world_size=plan.world_size)
        self.stream = stream
        self.workers = min(plan.workers, stream.n_shards) if plan.workers else 0
        shards = split.shards or [f"{stream.n_shards} shard(s) of {split.label}"]
        self.progress = StreamProgress.restore(resume, max(self.workers, 1), shards, restart)

    def __iter__(self) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]] | str]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        datasets.disable_progress_bars()
        logging.getLogger("datasets.iterable_dataset").addFilter(_no_buffer_warning)
        if worker < self.progress.start_worker:
            yield SKIP
        position = self.progress.positions.get(str(worker))
        stream = self.stream
        if info is not None and info.num_workers > 1:
            stream = stream.shard(num_shards=info.num_workers, index=worker, contiguous=False)
        stream = stream.with_format("arrow")  # blocks as Arrow tables: no row goes through Python objects twice
        for rows, epoch, block, state, skip in read_ahead(_epoch_blocks(stream, self.split.buffer_size, position)):
            yield from self._block(rows, epoch, block, state, skip, worker)

    def _block(self, rows: pa.Table, epoch: int, block: int, state: Any, skip: int,
               worker: int) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        where = f"epoch {epoch} block {block} (process {self.plan.rank}, worker {worker})"
        prepared, drops = self.split.prepare(rows, where)
        rows_or_packs = self.split.pack(prepared) if self.split.pack is not None and len(prepared) else prepared
        dataset = speech_dataset_over(rows_or_packs, self.feature_extractor, self.audio_column, self.on_bad_row)
        batches = self.plan.batches(dataset.durations, epoch, block, worker)
        for index, indices in enumerate(batches):
            if index < skip:
                continue
            yield [dataset[i] for i in indices], self._position(worker, epoch, block, index, state, drops, rows)
        if not batches and skip == 0:  # nothing kept of this block: an empty batch still reports its drops
            yield [], self._position(worker, epoch, block, 0, state, drops, rows)

    @staticmethod
    def _position(worker: int, epoch: int, block: int, index: int, state: Any, drops: DropCounts,
                  rows: pa.Table) -> dict[str, Any]:
        first = index == 0  # a block's figures travel with its first batch
        return {"worker": worker, "epoch": epoch, "block": block, "batch": index, "state": state,
                "drops": drops.as_dict() if first else None, "rows": rows.num_rows if first else 0}

    def loader(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]], args: Any) -> StreamLoader:
        """The training loader: batches come ready-made from the stream."""
        loader = torch.utils.data.DataLoader(
            self, batch_size=None, collate_fn=StreamCollator(collator), num_workers=self.workers,
            pin_memory=args.dataloader_pin_memory,
            prefetch_factor=args.dataloader_prefetch_factor if self.workers else None,
        )
        return StreamLoader(loader)


def _epoch_blocks(stream: datasets.IterableDataset, size: int,
                  position: dict[str, Any] | None) -> Iterator[tuple[pa.Table, int, int, Any, int]]:
    """(rows, epoch, block, reader state at the block's start, batches to skip) for every block of every epoch,
    starting at a saved ``position`` (or at the start)."""
    epoch = position["epoch"] if position else 0
    while True:
        resuming = position is not None and position["epoch"] == epoch
        block, skip, state = 0, 0, None
        if resuming:
            block, skip, state = position["block"], position["batch"] + 1, position["state"]
        stream.set_epoch(epoch)
        if state is not None:
            stream.load_state_dict(state)
        read = 0
        for table in _blocks(stream, size):
            read += table.num_rows
            yield table, epoch, block, state, skip
            block, skip, state = block + 1, 0, stream.state_dict()
        if read == 0 and not resuming:
            return  # this worker has no shards (more workers than shards)
        epoch, position = epoch + 1, None


def read_ahead(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """``items``, produced by a thread that keeps up to ``depth`` of them ready.

    The stream's reads (and datasets' pause when a parquet stream ends, 5 s at every epoch's end) then overlap the
    training on the blocks already read. An error in the thread is raised here, where the items are taken.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put("error", error)

    thread = threading.Thread(target=produce, name="stream-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        # Let a read in progress finish: a thread still inside Arrow's C++ reader when the interpreter exits aborts
        # the process ("terminate called without an active exception") after a run that succeeded.
        thread.join(timeout=60)


def _blocks(stream: datasets.IterableDataset, size: int) -> Iterator[pa.Table]:
    """The rows of ``stream`` as Arrow tables of ``size`` rows (the last may be shorter).

    Each loader worker reads its own shards, chosen explicitly (``stream.shard``): ``iter`` reads as in the main
    process, where ``for row in stream`` inside a worker would let datasets split the stream among workers itself
    and then fail to resume it (datasets 5.2 loads the saved state into the whole pipeline before splitting it).
    """
    from torch.utils.data._utils import worker as torch_worker

    if torch_worker._worker_info is not None:
        import fsspec.asyn

        fsspec.asyn.reset_lock()  # a forked worker must not wait on the parent's fsspec lock (Hub streaming)
    yield from stream.iter(batch_size=size)


def _no_buffer_warning(record: logging.LogRecord) -> bool:
    # The one-row buffer that reshuffles shard order holds nothing between rows; its resume warning does not apply.
    return "shuffle buffer" not in record.getMessage()


class StreamCollator:
    """Collates a stream's batch and keeps its position beside it."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, element: Any) -> Any:
        if element == SKIP:
            return SKIP
        items, meta = element
        batch = self.collator(items) if items else {}
        batch[POSITION_KEY] = meta
        return batch


class StreamLoader:
    """Iterates the DataLoader, leaving out the placeholders (:data:`SKIP`) and batches that kept no rows.

    The DataLoader takes batches from its workers in turn, always starting with worker 0. On a resume whose next
    batch is due from worker k, workers 0..k-1 first yield a placeholder, so the turns continue where they stopped.
    """

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.progress = loader.dataset.progress

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            if isinstance(batch, str):
                continue
            self.progress.consumed(batch[POSITION_KEY])  # what the Trainer takes, it trains on
            if len(batch) > 1:  # not the empty batch of a block that kept nothing
                yield batch


# ---------------------------------------------------------------------------------------------- resume state


class StreamProgress:
    """Where each loader worker of this process stands: the position of the last batch trained on, the worker
    whose batch is due next, what the blocks read so far dropped, and the shards the positions refer to."""

    def __init__(self, workers: int, shards: list[str] | None = None) -> None:
        self.workers = workers
        self.shards = list(shards or [])
        self.positions: dict[str, dict[str, Any]] = {}
        self.start_worker = 0
        self.next_worker = 0
        self.drops: dict[str, int] = {}
        self.rows_read = 0

    @classmethod
    def restore(cls, saved: dict[str, Any] | None, workers: int, shards: list[str] | None = None,
                restart: bool = False) -> StreamProgress:
        """The progress to continue from ``saved`` (a checkpoint's entry for this process).

        Saved positions index the shard list they were read from: a checkpoint whose list differs is refused by
        name (added and removed shards), unless ``restart`` (the stream starts again; rows read and dropped so
        far still count)."""
        progress = cls(workers, shards)
        if not saved:
            return progress
        progress.drops = dict(saved.get("drops", {}))
        progress.rows_read = int(saved.get("rows_read", 0))
        if restart:
            logger.warning("--restart_stream: the stream starts again from its beginning (the weights, optimizer "
                           "and step count resume).")
            return progress
        recorded = saved.get("shards")
        if recorded is not None and shards is not None and recorded != list(shards):
            added = [name for name in shards if name not in recorded]
            removed = [name for name in recorded if name not in shards]
            change = "; ".join(part for part in (
                f"added: {', '.join(added[:5])}{' ...' if len(added) > 5 else ''}" if added else "",
                f"removed: {', '.join(removed[:5])}{' ...' if len(removed) > 5 else ''}" if removed else "",
                "" if added or removed else "the same shards in another order",
            ) if part)
            raise UsageError(
                f"The checkpoint's stream position was saved reading {len(recorded)} shard(s); the split now has "
                f"{len(shards)} ({change}). Its saved positions belong to the old list. Restore the shards to go "
                "on where it stopped, pass --restart_stream to resume the model and read the stream again from "
                "its start, or --resume_from_checkpoint false to start fresh."
            )
        if recorded is None:
            logger.info("The checkpoint records no shard list (an older checkpoint): resuming its positions as "
                        "saved.")
        if saved.get("workers") != workers:
            logger.warning("The checkpoint's stream was read by %s loader worker(s), this run has %d: the stream "
                           "starts again from the beginning (batches already trained on are seen again).",
                           saved.get("workers"), workers)
            return progress
        progress.positions = dict(saved["positions"])
        progress.start_worker = progress.next_worker = int(saved["next_worker"])
        return progress

    def consumed(self, meta: dict[str, Any]) -> None:
        """Record a batch taken from the stream."""
        for reason, count in (meta.get("drops") or {}).items():
            self.drops[reason] = self.drops.get(reason, 0) + count
        self.rows_read += meta.get("rows", 0)
        self.positions[str(meta["worker"])] = {key: meta[key] for key in ("epoch", "block", "batch", "state")}
        self.next_worker = (int(meta["worker"]) + 1) % self.workers

    def state(self) -> dict[str, Any]:
        return {"workers": self.workers, "shards": self.shards, "positions": self.positions,
                "next_worker": self.next_worker, "drops": self.drops, "rows_read": self.rows_read}


class StreamStateCallback(TrainerCallback, ExportableState):
    """Puts every process's :class:`StreamProgress` into each checkpoint's trainer_state.json (gathered from all
    processes when a save is due, so it is written with the state file that marks the checkpoint complete)."""

    def __init__(self, progress: StreamProgress | None = None, accelerator: Any = None) -> None:
        self.progress = progress
        self.accelerator = accelerator
        self.gathered: list[dict[str, Any]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_save and self.progress is not None:
            if args.world_size > 1:
                from accelerate.utils import gather_object

                self.gathered = gather_object([self.progress.state()])
            else:
                self.gathered = [self.progress.state()]

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"processes": self.gathered}}


def saved_progress(checkpoint: str | None, rank: int) -> dict[str, Any] | None:
    """This process's stream state in ``checkpoint`` (None: none recorded, start at the beginning)."""
    if not checkpoint:
        return None
    try:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
        processes = state["stateful_callbacks"][StreamStateCallback.__name__]["attributes"]["processes"]
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("%s records no stream position: the stream starts again from the beginning.", checkpoint)
        return None
    if rank >= len(processes):
        logger.warning("%s was written by %d process(es); process %d starts its stream from the beginning.",
                       checkpoint, len(processes), rank)
        return None
    return processes[rank]
