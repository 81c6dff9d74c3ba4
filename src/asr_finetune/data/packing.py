"""Whisper packing (``--pack_utterances``): several short utterances in one 30 s input window.

Whisper pads every clip to its 30 s window, so a corpus of 3-second utterances trains on 90% silence. Whisper's own
training segments are 30 s of speech with the transcript of all of it; packing makes such segments from short
utterances: their audio one after another with :data:`GAP_SECONDS` of silence between, their transcripts joined by
a space, tokenized as one label sequence. Only the train split is packed; evaluation scores utterances one by one.

The packs are drawn once per run from a seeded shuffle (``--seed``), so a resumed run trains on the same packs;
the order of the packs is reshuffled every epoch as usual. A stream (``--streaming``) is packed block by block
(``--shuffle_buffer_size`` rows), as each block is read.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from asr_finetune.data.collators import BAD_ROW_KEY
from asr_finetune.data.features import extract_features
from asr_finetune.data.speech_dataset import SpeechDataset
from asr_finetune.errors import DataError, UsageError

logger = logging.getLogger(__name__)

GAP_SECONDS = 0.3
"""Silence between two utterances of a pack: a pause, as between sentences of continuous speech."""
OPEN_PACKS = 64
"""How many of the latest packs an utterance may join (first fit among them): near-full packs, linear time."""


@dataclass
class Packs:
    """The train split's utterances (``rows``, labelled) grouped into packs of member indices."""

    rows: datasets.Dataset
    members: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.members)

    def speech_seconds(self) -> float:
        return float(sum(self.rows["duration"]))


def plan_packs(durations: list[float], label_lengths: list[int], window: float, label_budget: int,
               seed: int) -> list[list[int]]:
    """Groups of utterance indices, each fitting ``window`` seconds (with gaps) and ``label_budget`` label tokens,
    filled first-fit in a seeded random order (so a pack mixes utterances from all over the corpus)."""
    order = list(range(len(durations)))
    random.Random(seed).shuffle(order)
    packs: list[list[int]] = []
    seconds: list[float] = []
    tokens: list[int] = []
    for index in order:
        duration, length = durations[index], label_lengths[index]
        for pack in range(max(0, len(packs) - OPEN_PACKS), len(packs)):
            if seconds[pack] + GAP_SECONDS + duration <= window and tokens[pack] + length <= label_budget:
                packs[pack].append(index)
                seconds[pack] += GAP_SECONDS + duration
                tokens[pack] += length
                break
        else:
            packs.append([index])
            seconds.append(duration)
            tokens.append(length)
    return packs


def pack_utterances(rows: datasets.Dataset, tokenizer: Any, window: float | None, label_limit: int | None,
                    start_token: int | None, seed: int, log: bool = True) -> Packs:
    """The train split (or one block of a stream, ``log=False``) as packs of utterances that fill ``window`` seconds,
    each with the labels of its joined transcript (at most ``label_limit`` tokens after the decoder-start token,
    which the collator strips)."""
    check_window(window)
    texts, labels = list(rows["text"]), list(rows["labels"])
    overhead = _overhead(tokenizer)
    # A space between transcripts may tokenize into one more token per utterance: budgeted for, then checked.
    lengths = [max(1, len(seq) - overhead) + 1 for seq in labels]
    budget = (label_limit or 10**9) - overhead
    members = plan_packs(list(rows["duration"]), lengths, window, budget, seed)
    joined = tokenizer([" ".join(texts[i] for i in pack) for pack in members]).input_ids
    for pack, seq in zip(members, joined, strict=True):
        if label_limit is not None and _decoder_length(seq, start_token) > label_limit:
            raise DataError(f"A pack of {len(pack)} utterances has {len(seq)} label tokens, more than the decoder's "
                            f"{label_limit}: leave out --pack_utterances and report this as a bug.")
    packs = Packs(rows, members, joined)
    if not log:
        return packs
    speech = packs.speech_seconds()
    logger.info("--pack_utterances: %d utterances (%.2f h) packed into %d windows of %g s: %.0f%% of each window "
                "is speech (%.0f%% unpacked); %.1f utterances a window.", len(rows), speech / 3600, len(members),
                window, 100 * speech / (len(members) * window), 100 * speech / (len(rows) * window),
                len(rows) / max(1, len(members)))
    return packs


def check_window(window: float | None) -> None:
    """Packing needs a model that pads every clip to one fixed window (Whisper); refuse any other."""
    if window is None:
        raise UsageError("--pack_utterances fills Whisper's fixed 30 s input window; this model pads each batch to "
                         "its longest clip instead, so there is no padding to fill: leave it out (--max_batch_duration "
                         "keeps such padding low).")


def _overhead(tokenizer: Any) -> int:
    """Label tokens that are not the transcript: the prefix (<|startoftranscript|> ...) and the end token."""
    return len(tokenizer("").input_ids)


def _decoder_length(seq: list[int], start_token: int | None) -> int:
    return len(seq) - (1 if seq and seq[0] == start_token else 0)


class PackedSpeechDataset(SpeechDataset):
    """A :class:`SpeechDataset` whose items are packs: the members' audio decoded and joined with silence, one
    feature window, the joined transcript's labels. ``seconds`` counts speech only (gaps count as padding)."""

    def __init__(self, packs: Packs, feature_extractor: Any, audio_column: str, on_bad_row: str = "error") -> None:
        super().__init__(packs.rows, feature_extractor, audio_column, on_bad_row)
        self.packs = packs
        self.ids = ["+".join(self.row_ids[i] for i in pack) for pack in packs.members]
        durations = self.durations
        self.durations = [sum(durations[i] for i in pack) + GAP_SECONDS * (len(pack) - 1) for pack in packs.members]

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sampling_rate = self.feature_extractor.sampling_rate
        gap = np.zeros(int(GAP_SECONDS * sampling_rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        speech = 0
        for member in self.packs.members[index]:
            samples = self._decode(member, self.rows[member][self.audio_column])
            if samples is None:
                return {BAD_ROW_KEY: self.row_ids[member]}
            pieces += [gap, samples] if pieces else [samples]
            speech += len(samples)
        audio = np.concatenate(pieces)
        features = extract_features(self.feature_extractor, audio, sampling_rate)
        return {
            self.input_name: features[self.input_name][0],
            "seconds": speech / sampling_rate,
            "id": self.ids[index],
            "labels": self.packs.labels[index],
        }


def speech_dataset_over(rows: datasets.Dataset | Packs, feature_extractor: Any, audio_column: str,
                        on_bad_row: str) -> SpeechDataset:
    """The torch dataset over prepared rows, or over packs of them (``--pack_utterances``)."""
    if isinstance(rows, Packs):
        return PackedSpeechDataset(rows, feature_extractor, audio_column, on_bad_row)
    return SpeechDataset(rows, feature_extractor, audio_column, on_bad_row)
