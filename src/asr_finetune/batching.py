"""Padding collators and samplers: turning items into batches."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from .errors import DataError, UsageError

logger = logging.getLogger(__name__)

LABEL_PAD = -100
STAT_KEYS = ("audio_seconds", "padded_seconds")
"""Batch keys a collator adds for throughput accounting; the trainer removes them before the forward pass."""
BAD_ROW_KEY = "bad_row"
"""An item that could not be decoded under ``--on_bad_row skip``: the collators leave it out and count it."""
IDS_KEY = "utterance_ids"
SKIPPED_KEY = "bad_rows_skipped"
BOOKKEEPING_KEYS = (*STAT_KEYS, IDS_KEY, SKIPPED_KEY)
"""Every key a collator adds beside the model inputs (removed before the forward pass)."""
STATIC_BUCKETS = 8
"""Duration buckets (so input lengths) under ``--static_shapes`` when ``--num_duration_buckets`` is 0."""
STATIC_LABEL_MULTIPLE = 16
"""Under ``--static_shapes`` label lengths are padded to a multiple of this, so decoders see few lengths too."""
FRAME_HOP = 320
"""Static input lengths are whole multiples of wav2vec2's frame hop (20 ms at 16 kHz)."""


def usable_items(items: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The items that decoded, and the ids of those skipped under ``--on_bad_row skip``."""
    good = [item for item in items if BAD_ROW_KEY not in item]
    bad = [str(item[BAD_ROW_KEY]) for item in items if BAD_ROW_KEY in item]
    if not good:
        raise DataError(f"Every clip of a batch failed to decode ({', '.join(bad)}): check these files.")
    return good, bad


def audio_stats(
    items: Sequence[dict[str, Any]], fixed_seconds: float | None = None, skipped: Sequence[str] = ()
) -> dict[str, Any]:
    """Speech seconds in a batch and the seconds it occupies once padded (``fixed_seconds`` per item for models
    whose inputs always have one length, such as Whisper's 30 s windows), the batch's utterance ids (named when a
    step goes wrong) and how many of its rows were skipped as undecodable. Items carry ``seconds`` and ``id``."""
    seconds = [float(item.get("seconds", 0.0)) for item in items]
    padded = len(seconds) * (fixed_seconds if fixed_seconds is not None else max(seconds, default=0.0))
    return {
        "audio_seconds": torch.tensor(sum(seconds)),
        "padded_seconds": torch.tensor(padded),
        IDS_KEY: [str(item.get("id", "")) for item in items],
        SKIPPED_KEY: len(skipped),
    }


def pad_labels(labels: Sequence[Sequence[int]], pad_to_multiple_of: int | None = None) -> torch.Tensor:
    """Right-pad label id lists with -100 (ignored by the losses) into one tensor."""
    length = max((len(seq) for seq in labels), default=0)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = torch.full((len(labels), length), LABEL_PAD, dtype=torch.long)
    for row, seq in enumerate(labels):
        batch[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return batch


def static_length(items: Sequence[dict[str, Any]], name: str, lengths: Sequence[int]) -> int | None:
    """The smallest of ``lengths`` (sorted) that holds the longest ``name`` input of ``items``, or that input's own
    length when none does; None without ``lengths`` (pad to the longest, as usual)."""
    if not lengths:
        return None
    longest = max(np.shape(item[name])[-1] for item in items)
    return next((length for length in lengths if length >= longest), longest)


def pad_inputs(
    feature_extractor: Any,
    items: Sequence[dict[str, Any]],
    pad_to_multiple_of: int | None = None,
    length: int | None = None,
    **kwargs: Any,
) -> Any:
    """Pad the model inputs of ``items`` (the feature extractor's first input name) into one batch of tensors: to
    the longest, or to ``length`` when given."""
    name = feature_extractor.model_input_names[0]
    return feature_extractor.pad(
        [{name: item[name]} for item in items],
        padding="max_length" if length else True,
        max_length=length,
        pad_to_multiple_of=None if length else pad_to_multiple_of,
        return_tensors="pt",
        **kwargs,
    )


@dataclass
class CTCCollator:
    """Pads raw-audio inputs with the feature extractor and labels with -100."""

    feature_extractor: Any
    pad_to_multiple_of: int | None = None
    static_lengths: tuple[int, ...] = ()
    """``--static_shapes``: input lengths (samples, sorted) a batch is padded up to; see :func:`static_collator`."""

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        items, skipped = usable_items(items)
        window = self.window_seconds()
        lengths = () if window is not None else self.static_lengths
        length = static_length(items, self.feature_extractor.model_input_names[0], lengths)
        batch = pad_inputs(self.feature_extractor, items, self.pad_to_multiple_of, length)
        if "labels" in items[0]:
            multiple = STATIC_LABEL_MULTIPLE if lengths else None
            batch["labels"] = pad_labels([item["labels"] for item in items], multiple)
        if length is not None:
            window = length / self.feature_extractor.sampling_rate
        return {**batch, **audio_stats(items, window, skipped)}

    def window_seconds(self) -> float | None:
        """The fixed input length every clip is padded to, if the model has one (counted as padding)."""
        return None


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


@dataclass
class Seq2SeqCollator(CTCCollator):
    """Pads inputs like :class:`CTCCollator` and labels with -100, then strips a leading decoder-start token.

    Labels come from the tokenizer with its start token (BART's ``<s>``, Whisper's ``<|startoftranscript|>``);
    the model prepends ``decoder_start_token_id`` itself when it shifts labels into decoder inputs, so the
    token is removed here (when every row starts with it). ``input_seconds``: the fixed window every input is
    padded to (Whisper: 30 s), counted as padding in the throughput figures.
    """

    decoder_start_token_id: int | None = None
    input_seconds: float | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        window = getattr(self.feature_extractor, "nb_max_frames", None) if self.input_seconds else None
        if window and any(np.shape(item["input_features"])[-1] > window for item in items if BAD_ROW_KEY not in item):
            batch = self._pad_long_features(items)
        else:
            batch = super().__call__(items)
        labels = batch.get("labels")
        start = self.decoder_start_token_id
        if labels is not None and start is not None and labels.shape[1] > 0 and bool((labels[:, 0] == start).all()):
            batch["labels"] = labels[:, 1:]
        return batch

    def window_seconds(self) -> float | None:
        return self.input_seconds

    def _pad_long_features(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Evaluation batches with clips longer than Whisper's window: unclipped features, right-padded, with the
        frame-level attention mask long-form generation needs (see :mod:`asr_finetune.longform`)."""
        from .longform import pad_features

        items, skipped = usable_items(items)
        features, mask = pad_features([item["input_features"] for item in items])
        batch = {"input_features": features, "attention_mask": mask}
        if "labels" in items[0]:
            batch["labels"] = pad_labels([item["labels"] for item in items])
        return {**batch, **audio_stats(items, skipped=skipped)}


@dataclass
class PretrainingCollator:
    """Pads raw audio (with an attention mask) and draws span masks and negatives per utterance for wav2vec2
    pretraining; ``config`` is the model config (mask_time_prob, mask_time_length, num_negatives, conv layout)."""

    feature_extractor: Any
    config: Any
    pad_to_multiple_of: int | None = None
    static_lengths: tuple[int, ...] = ()

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from .pretraining import sample_masks_and_negatives

        items, skipped = usable_items(items)
        length = static_length(items, self.feature_extractor.model_input_names[0], self.static_lengths)
        batch = pad_inputs(self.feature_extractor, items, self.pad_to_multiple_of, length, return_attention_mask=True)
        masks = sample_masks_and_negatives(self.config, batch["attention_mask"])
        fixed = None if length is None else length / self.feature_extractor.sampling_rate
        return {**batch, **masks, **audio_stats(items, fixed, skipped)}


# ---------------------------------------------------------------------------------------------- flags


@dataclass
class BatchingArguments:
    """How training batches are formed; shared by every entry script."""

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


def static_collator(collator: Any, sampler: Any) -> Any:
    """``collator`` padding inputs to ``sampler``'s static lengths when it draws static batches; else ``collator``.

    Models whose inputs already have one length (Whisper's 30 s window) are left as they are."""
    if not getattr(sampler, "static", False) or not hasattr(collator, "static_lengths"):
        return collator
    if getattr(collator, "window_seconds", lambda: None)() is not None:
        logger.info("--static_shapes: this model's inputs already have one length (its window); nothing to pad.")
        return collator
    lengths = sampler.static_lengths(collator.feature_extractor.sampling_rate)
    logger.info("Static shapes: training batches padded to %d input lengths (%s s).", len(lengths),
                ", ".join(f"{length / collator.feature_extractor.sampling_rate:.2f}" for length in lengths))
    return dataclasses.replace(collator, static_lengths=lengths)
