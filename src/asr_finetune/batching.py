"""Padding collators and samplers: turning items into batches."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from .errors import DataError, UsageError

LABEL_PAD = -100
STAT_KEYS = ("audio_seconds", "padded_seconds")
"""Batch keys a collator adds for throughput accounting; the trainer removes them before the forward pass."""
BAD_ROW_KEY = "bad_row"
"""An item that could not be decoded under ``--on_bad_row skip``: the collators leave it out and count it."""
IDS_KEY = "utterance_ids"
SKIPPED_KEY = "bad_rows_skipped"
BOOKKEEPING_KEYS = (*STAT_KEYS, IDS_KEY, SKIPPED_KEY)
"""Every key a collator adds beside the model inputs (removed before the forward pass)."""


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


def pad_inputs(
    feature_extractor: Any, items: Sequence[dict[str, Any]], pad_to_multiple_of: int | None = None, **kwargs: Any
) -> Any:
    """Pad the model inputs of ``items`` (the feature extractor's first input name) into one batch of tensors."""
    name = feature_extractor.model_input_names[0]
    return feature_extractor.pad(
        [{name: item[name]} for item in items],
        padding=True,
        pad_to_multiple_of=pad_to_multiple_of,
        return_tensors="pt",
        **kwargs,
    )


@dataclass
class CTCCollator:
    """Pads raw-audio inputs with the feature extractor and labels with -100."""

    feature_extractor: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        items, skipped = usable_items(items)
        batch = pad_inputs(self.feature_extractor, items, self.pad_to_multiple_of)
        if "labels" in items[0]:
            batch["labels"] = pad_labels([item["labels"] for item in items])
        return {**batch, **audio_stats(items, self.window_seconds(), skipped)}

    def window_seconds(self) -> float | None:
        """The fixed input length every clip is padded to, if the model has one (counted as padding)."""
        return None


class DurationBatchSampler(Sampler[list[int]]):
    """Batches drawn from duration buckets: up to ``max_batch_duration`` padded seconds, or ``batch_size`` items.

    Each epoch, utterances are ordered by duration times a random factor within 1 +- ``jitter`` (so batch
    membership changes between epochs but stays among similar lengths), cut into ``num_buckets`` equal-count
    buckets (0: about four batches per bucket), packed into batches, and the batches of all buckets are
    shuffled together. Deterministic for a (seed, epoch), so a
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
        self.num_buckets = max(1, min(num_buckets or self._auto_buckets(), len(durations)))
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

    def _pack(self, indices: list[int]) -> list[list[int]]:
        if self.fixed_size is not None:
            return [indices[i : i + self.fixed_size] for i in range(0, len(indices), self.fixed_size)]
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
        jitter = self.jitter if self.shuffle else 0.0
        # Sorting by a jittered duration makes each epoch's batches differ while keeping their members alike.
        keys = [d * (1.0 + rng.uniform(-jitter, jitter)) for d in self.durations]
        order = sorted(range(len(self.durations)), key=keys.__getitem__)
        size, replicas = len(order), self.num_replicas
        groups: list[list[list[int]]] = []
        leftovers: list[list[int]] = []
        for bucket_index in range(self.num_buckets):
            bucket = order[bucket_index * size // self.num_buckets : (bucket_index + 1) * size // self.num_buckets]
            batches = self._pack(bucket)
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

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from .pretraining import sample_masks_and_negatives

        items, skipped = usable_items(items)
        batch = pad_inputs(self.feature_extractor, items, self.pad_to_multiple_of, return_attention_mask=True)
        masks = sample_masks_and_negatives(self.config, batch["attention_mask"])
        return {**batch, **masks, **audio_stats(items, skipped=skipped)}


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
        default=0, metadata={"help": "Equal-count duration buckets; 0 picks about four batches per bucket."}
    )

    @property
    def enabled(self) -> bool:
        return self.duration_buckets or self.max_batch_duration is not None

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
        )
