"""Batches from duration buckets (``--max_batch_duration``, ``--static_shapes``): the sampler owns its shuffling,
its ranks and its resume state; the flags that configure it."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Sampler

from asr_finetune.errors import UsageError

STATIC_BUCKETS = 8
"""Duration buckets (so input lengths) under ``--static_shapes`` when ``--num_duration_buckets`` is 0."""
FRAME_HOP = 320
"""Static input lengths are whole multiples of wav2vec2's frame hop (20 ms at 16 kHz)."""


class DurationBatchSampler(Sampler[list[int]]):
    """Batches drawn from duration buckets: up to ``max_batch_duration`` padded seconds, or ``batch_size`` items.

    Each epoch, utterances are ordered by duration times a random factor within 1 +- ``jitter`` (so batch
    membership changes between epochs but stays among similar lengths), cut into ``num_buckets`` equal-count
    buckets (0: about four batches per bucket), packed into batches, and the batches of all buckets are
    shuffled together. ``static``: the buckets are cut once, without jitter (0: :data:`STATIC_BUCKETS`), and
    shuffled within; every batch of a bucket is padded to the bucket's longest clip (:attr:`bounds`), so a
    duration budget fits the same number of clips into each of its batches. Deterministic for a (seed, epoch), so a
    resumed run sees the same batches. Distributed: every rank builds the same plan and takes its own batch of
    each group of ``num_replicas`` batches cut from the same bucket, so ranks step through similar lengths
    together and none waits on another's long batch.
    """

    batch_size = None  # batches vary in size; tells accelerate not to assume a fixed size

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_batch_duration: float | None = None,
        batch_size: int | None = None,
        num_buckets: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        jitter: float = 0.02,
        static: bool = False,
    ) -> None:
        if (max_batch_duration is None) == (batch_size is None):
            raise ValueError("Give exactly one of max_batch_duration (seconds) or batch_size.")
        longest = max(durations, default=0.0)
        if max_batch_duration is not None and longest > max_batch_duration:
            raise UsageError(
                f"An utterance lasts {longest:.1f}s, more than --max_batch_duration {max_batch_duration}s: raise "
                "--max_batch_duration or lower --max_duration_in_seconds."
            )
        if len(durations) < num_replicas:
            raise UsageError(f"{len(durations)} utterances cannot feed {num_replicas} processes.")
        self.durations = list(durations)
        self.max_batch_duration = max_batch_duration
        self.fixed_size = batch_size
        default_buckets = STATIC_BUCKETS if static else self._auto_buckets()
        self.num_buckets = max(1, min(num_buckets or default_buckets, len(durations)))
        self.static = static
        self.static_buckets = self._cut(sorted(range(len(durations)), key=self.durations.__getitem__)) if static else []
        self.bounds = [max(self.durations[i] for i in bucket) for bucket in self.static_buckets]
        """Under ``static``: each bucket's longest clip (seconds), the length its batches are padded to."""
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.jitter = jitter
        self.epoch = 0
        self._plan: list[list[list[int]]] | None = None

    def _auto_buckets(self, batches_per_bucket: int = 4) -> int:
        """Enough buckets that each holds about ``batches_per_bucket`` batches: shuffled, yet tightly packed."""
        if self.fixed_size is not None:
            batches = len(self.durations) / self.fixed_size
        else:
            batches = sum(self.durations) / self.max_batch_duration
        return max(1, round(batches / batches_per_bucket))

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self._plan = None

    def _cut(self, order: list[int]) -> list[list[int]]:
        """``order`` cut into ``num_buckets`` equal-count buckets."""
        size, count = len(order), self.num_buckets
        return [order[b * size // count : (b + 1) * size // count] for b in range(count)]

    def static_lengths(self, sampling_rate: int) -> tuple[int, ...]:
        """The input lengths (samples) batches are padded to under ``static``: each bucket's bound, rounded up past
        it to a whole :data:`FRAME_HOP` (so a clip resampled a sample longer than its header still fits)."""
        hops = {math.floor(bound * sampling_rate) // FRAME_HOP + 1 for bound in self.bounds}
        return tuple(sorted(hop * FRAME_HOP for hop in hops))

    def _pack(self, indices: list[int], bound: float | None = None) -> list[list[int]]:
        if self.fixed_size is not None or bound is not None:
            size = self.fixed_size or max(1, int(self.max_batch_duration // bound))
            return [indices[i : i + size] for i in range(0, len(indices), size)]
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for index in indices:
            duration = self.durations[index]
            if current and max(longest, duration) * (len(current) + 1) > self.max_batch_duration:
                batches.append(current)
                current, longest = [], 0.0
            current.append(index)
            longest = max(longest, duration)
        if current:
            batches.append(current)
        return batches

    def plan(self) -> list[list[list[int]]]:
        """Groups of ``num_replicas`` batches, in the order they are trained this epoch."""
        if self._plan is not None:
            return self._plan
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        replicas = self.num_replicas
        if self.static:
            buckets = [list(bucket) for bucket in self.static_buckets]
            for bucket in buckets if self.shuffle else []:
                rng.shuffle(bucket)
            bounds: list[float | None] = list(self.bounds)
        else:
            jitter = self.jitter if self.shuffle else 0.0
            # Sorting by a jittered duration makes each epoch's batches differ while keeping their members alike.
            keys = [d * (1.0 + rng.uniform(-jitter, jitter)) for d in self.durations]
            buckets = self._cut(sorted(range(len(self.durations)), key=keys.__getitem__))
            bounds = [None] * len(buckets)
        groups: list[list[list[int]]] = []
        leftovers: list[list[int]] = []
        for bucket, bound in zip(buckets, bounds, strict=True):
            batches = self._pack(bucket, bound)
            whole = len(batches) // replicas * replicas
            groups += [batches[i : i + replicas] for i in range(0, whole, replicas)]
            leftovers += batches[whole:]
        leftovers.sort(key=lambda batch: max(self.durations[i] for i in batch))
        for start in range(0, len(leftovers), replicas):
            group = leftovers[start : start + replicas]
            if len(group) < replicas:
                if self.drop_last and groups:
                    break
                filler = [batch for g in groups for batch in g] + leftovers
                group += (filler * replicas)[: replicas - len(group)]
            groups.append(group)
        if self.shuffle:
            rng.shuffle(groups)
        self._plan = groups
        return groups

    def __iter__(self) -> Iterator[list[int]]:
        for group in self.plan():
            yield group[self.rank]

    def __len__(self) -> int:
        return len(self.plan())


# ---------------------------------------------------------------------------------------------- flags


@dataclass
class BatchingArguments:
    """How training batches are formed; shared by every entry script."""

    _argument_group_name = "Batching (duration buckets, static shapes)"

    max_batch_duration: float | None = field(
        default=None,
        metadata={"help": "Form batches of up to this many seconds of padded audio from duration buckets "
                  "(per device; --per_device_train_batch_size is then ignored)."},
    )
    duration_buckets: bool = field(
        default=False,
        metadata={"help": "Draw fixed-size batches (--per_device_train_batch_size) from duration buckets."},
    )
    num_duration_buckets: int = field(
        default=0, metadata={"help": "Equal-count duration buckets; 0 picks about four batches per bucket "
                             f"({STATIC_BUCKETS} with --static_shapes)."}
    )
    static_shapes: bool = field(
        default=False,
        metadata={"help": "Pad every training batch to its duration bucket's longest clip (and, with "
                  "--max_batch_duration, give each bucket's batches one size), so --torch_compile and HPU graphs "
                  "see a few input shapes instead of one per batch. Needs --max_batch_duration or --duration_buckets."},
    )

    def __post_init__(self) -> None:
        if self.max_batch_duration is not None and not self.max_batch_duration > 0:
            raise UsageError(f"--max_batch_duration {self.max_batch_duration}: give a positive number of seconds.")
        if self.num_duration_buckets < 0:
            raise UsageError(f"--num_duration_buckets {self.num_duration_buckets}: give 0 (automatic) or more.")
        if self.static_shapes and not self.enabled:
            raise UsageError("--static_shapes pads batches to their duration bucket's length: add "
                             "--max_batch_duration SECONDS or --duration_buckets.")

    @property
    def enabled(self) -> bool:
        return self.duration_buckets or self.max_batch_duration is not None

    def check(self, streaming: bool) -> None:
        """Refuse at start what these flags cannot do."""
        if self.static_shapes and streaming:
            raise UsageError("--static_shapes needs the whole split's durations to fix its lengths; a stream is read "
                             "block by block. Leave it out with --streaming.")

    def sampler(
        self, durations: Sequence[float], batch_size: int, *, seed: int, num_replicas: int = 1, rank: int = 0,
        drop_last: bool = False,
    ) -> Any:
        """The duration-bucketed batch sampler these flags ask for (``batch_size`` unless a duration budget)."""
        return DurationBatchSampler(
            durations,
            max_batch_duration=self.max_batch_duration,
            batch_size=None if self.max_batch_duration is not None else batch_size,
            num_buckets=self.num_duration_buckets,
            seed=seed,
            num_replicas=num_replicas,
            rank=rank,
            drop_last=drop_last,
            static=self.static_shapes,
        )
