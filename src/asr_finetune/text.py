"""Transcript normalisation: characters to ignore (escaped), case, optional phonemes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

Case = Literal["lower", "upper", "keep"]

_SPACES = re.compile(r"\s+")


def chars_to_ignore_pattern(chars_to_ignore: Iterable[str] | None) -> re.Pattern[str] | None:
    """A regex matching exactly the given characters.

    Each list item may hold one or several characters (``--chars_to_ignore , ? .`` and
    ``--chars_to_ignore ",?."`` mean the same). Every character is escaped, so ``!-;`` never
    becomes a range that silently deletes digits and apostrophes.
    """
    chars = sorted({char for item in (chars_to_ignore or []) for char in item})
    if not chars:
        return None
    return re.compile("[" + "".join(re.escape(char) for char in chars) + "]")


def infer_case(vocab: Iterable[str]) -> Case:
    """The case convention of an existing vocabulary: all-lower, all-upper, or mixed (keep)."""
    letters = [
        char for token in vocab if len(token) == 1 for char in token if char.isalpha() and char.lower() != char.upper()
    ]
    has_lower = any(char.islower() for char in letters)
    has_upper = any(char.isupper() for char in letters)
    if has_upper and not has_lower:
        return "upper"
    if has_lower and not has_upper:
        return "lower"
    return "keep"


class TextNormalizer:
    """Turns a raw transcript into the text the model learns to emit."""

    def __init__(
        self,
        chars_to_ignore: Sequence[str] | None = None,
        case: Case = "lower",
        phoneme_language: str | None = None,
    ) -> None:
        self.pattern = chars_to_ignore_pattern(chars_to_ignore)
        self.case = case
        self.phoneme_language = phoneme_language
        self._phonemizer = None

    def __call__(self, text: str) -> str:
        return self.batch([text])[0]

    def batch(self, texts: Sequence[str]) -> list[str]:
        """Normalise many transcripts at once (phonemisation is much faster batched)."""
        cleaned = [self._clean(text) for text in texts]
        if self.phoneme_language:
            cleaned = self._phonemize(cleaned)
        return cleaned

    def _clean(self, text: str) -> str:
        text = text if isinstance(text, str) else ""
        if self.pattern is not None:
            text = self.pattern.sub("", text)
        if self.case == "lower":
            text = text.lower()
        elif self.case == "upper":
            text = text.upper()
        return _SPACES.sub(" ", text).strip()

    def _phonemize(self, texts: list[str]) -> list[str]:
        if self._phonemizer is None:
            try:
                from phonemizer.backend import EspeakBackend
            except ImportError as err:
                raise RuntimeError(
                    "--phoneme_language needs phonemizer: pip install 'asr-finetune[phonemes]' "
                    "and apt-get install espeak-ng"
                ) from err
            self._phonemizer = EspeakBackend(self.phoneme_language, preserve_punctuation=False, with_stress=False)
        from phonemizer.separator import Separator

        phonemes = self._phonemizer.phonemize(texts, separator=Separator(phone="", word=" "), strip=True)
        return [_SPACES.sub(" ", p).strip() for p in phonemes]
