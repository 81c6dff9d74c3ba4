"""Transcript normalisation: Unicode NFC, characters to ignore (escaped), case (Turkish-aware), optional phonemes."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal

from asr_finetune.errors import UsageError

logger = logging.getLogger(__name__)

Case = Literal["lower", "upper", "keep"]

_SPACES = re.compile(r"\s+")

DOTTED_I_LANGUAGES = {"tr": "Turkish", "az": "Azerbaijani", "tur": "Turkish", "aze": "Azerbaijani",
                      "turkish": "Turkish", "azerbaijani": "Azerbaijani"}
"""Languages whose I/i pairs are I/ı and İ/i: lower-casing 'IŞIK' must give 'ışık', not 'işik'."""
_TURKIC_LOWER = str.maketrans({"I": "ı", "İ": "i"})
_TURKIC_UPPER = str.maketrans({"i": "İ", "ı": "I"})


def language_code(value: str | None) -> str | None:
    """'tr', 'tr-TR', 'tr_tr', 'Turkish' -> 'tr'; None for values that are not a known language (a dataset config
    such as 'clean' or 'all' is not one). Known: the ~100 languages of Whisper's tables, and Turkish/Azeri names."""
    if not value:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    head = re.split(r"[-_]", value.strip().lower())[0]
    if head in LANGUAGES:
        return head
    if head in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[head]
    return head if head in DOTTED_I_LANGUAGES else None


def resolve_text_language(explicit: str | None, *fallbacks: tuple[str, str | None]) -> str | None:
    """The language transcripts are in: ``--text_language``, else the first fallback (flag name, value) that is a
    language code. Logs which was used, since it changes how text is lower-cased."""
    if explicit:
        return language_code(explicit) or explicit.lower()
    for flag, value in fallbacks:
        code = language_code(value)
        if code:
            logger.info("Text language %r (from %s); set --text_language to change it.", code, flag)
            return code
    return None


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
        language: str | None = None,
    ) -> None:
        self.pattern = chars_to_ignore_pattern(chars_to_ignore)
        self.case = case
        self.phoneme_language = phoneme_language
        self.dotted_i = language_code(language) in DOTTED_I_LANGUAGES
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
        # NFC first: "é" typed as e + U+0301 and as one character must become the same token.
        text = unicodedata.normalize("NFC", text if isinstance(text, str) else "")
        if self.pattern is not None:
            text = self.pattern.sub("", text)
        if self.case == "lower":
            text = (text.translate(_TURKIC_LOWER) if self.dotted_i else text).lower()
        elif self.case == "upper":
            text = (text.translate(_TURKIC_UPPER) if self.dotted_i else text).upper()
        return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()

    def _phonemize(self, texts: list[str]) -> list[str]:
        if self._phonemizer is None:
            try:
                from phonemizer.backend import EspeakBackend
            except ImportError as err:
                raise UsageError(
                    "--phoneme_language needs phonemizer: pip install 'asr-finetune[phonemes]' "
                    "and apt-get install espeak-ng"
                ) from err
            self._phonemizer = EspeakBackend(self.phoneme_language, preserve_punctuation=False, with_stress=False)
        from phonemizer.separator import Separator

        phonemes = self._phonemizer.phonemize(texts, separator=Separator(phone="", word=" "), strip=True)
        return [_SPACES.sub(" ", p).strip() for p in phonemes]
