"""Character vocabularies for CTC: built from the training text, saved as vocab.json, loaded as a tokenizer."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable

from asr_finetune.files import write_json

VOCAB_FILE = "vocab.json"


def build_vocab(
    texts: Iterable[str],
    word_delimiter_token: str = "|",
    unk_token: str = "[UNK]",
    pad_token: str = "[PAD]",
) -> dict[str, int]:
    """One id per character seen in ``texts``, sorted, space as the word delimiter, then UNK and PAD.

    The layout (sorted characters first, then ``[UNK]``, then ``[PAD]``, the CTC blank) is the one the
    reference script produces, so a vocab built here matches one built there from the same text.
    """
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    chars.discard(" ")
    chars.add(word_delimiter_token)
    chars -= {unk_token, pad_token}
    vocab = {symbol: index for index, symbol in enumerate(sorted(chars))}
    vocab[unk_token] = len(vocab)
    vocab[pad_token] = len(vocab)
    return vocab


def save_vocab(vocab: dict[str, int], path: str | os.PathLike) -> None:
    """Write vocab.json atomically: a reader never sees a half-written file."""
    write_json(vocab, path)


def load_vocab(path: str | os.PathLike) -> dict[str, int]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def missing_characters(texts: Iterable[str], vocab: Iterable[str], word_delimiter_token: str = "|") -> Counter[str]:
    """Count the characters of ``texts`` that the vocab cannot represent (they would become UNK)."""
    known = set(vocab)
    if word_delimiter_token in known:
        known.add(" ")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(char for char in text if char not in known)
    return counts


def format_missing(counts: Counter[str], limit: int = 20) -> str:
    """``'é' x12, 'ß' x3`` for a log line."""
    return ", ".join(f"{char!r} x{count}" for char, count in counts.most_common(limit))
