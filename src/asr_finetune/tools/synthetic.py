"""Deterministic synthetic speech corpora rendered with espeak-ng.

The corpora use the Hugging Face ``audiofolder`` layout: one directory per
split holding WAV files and a ``metadata.jsonl`` that names them. Audio is kept
at espeak-ng's native 22050 Hz mono 16-bit PCM; resampling is left to the
loader.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from asr_finetune.files import write_json, write_jsonl

__all__ = [
    "DIGIT_WORDS",
    "KINDS",
    "PITCH_RANGE",
    "SPEED_RANGE",
    "SPLITS",
    "VOICE_VARIANTS",
    "WORD_VOCABULARY",
    "make_corpus",
    "make_unlabeled_corpus",
]

_DIGIT_STRINGS = {
    "en": "zero one two three four five six seven eight nine",
    "de": "null eins zwei drei vier fünf sechs sieben acht neun",
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve",
    "fr": "zéro un deux trois quatre cinq six sept huit neuf",
    "it": "zero uno due tre quattro cinque sei sette otto nove",
    "nl": "nul één twee drie vier vijf zes zeven acht negen",
    "pt": "zero um dois três quatro cinco seis sete oito nove",
}
DIGIT_WORDS: dict[str, tuple[str, ...]] = {language: tuple(words.split()) for language, words in _DIGIT_STRINGS.items()}

# fmt: off
WORD_VOCABULARY: tuple[str, ...] = (
    "the", "my", "your", "this", "that", "one", "two", "big", "small", "old",
    "new", "red", "blue", "green", "black", "white", "good", "happy", "hot", "cold",
    "dog", "cat", "bird", "fish", "horse", "man", "woman", "child", "house", "car",
    "tree", "book", "door", "table", "water", "apple", "bread", "ball", "sun", "moon",
    "sees", "likes", "has", "wants", "finds", "opens", "eats", "reads", "runs", "walks",
    "sleeps", "jumps", "is", "on", "in", "under", "near", "with", "and", "very",
)
# fmt: on

VOICE_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4")
SPEED_RANGE: tuple[int, int] = (130, 190)
PITCH_RANGE: tuple[int, int] = (30, 70)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
KINDS: tuple[str, ...] = ("digits", "words")

CORPUS_FILE = "corpus.json"
METADATA_FILE = "metadata.jsonl"
_FORMAT_VERSION = 1
_MAX_DRAWS = 1000
_INSTALL_HINT = "install it with `apt-get install espeak-ng`"


@dataclass(frozen=True)
class _Utterance:
    file_name: str
    text: str
    voice: str
    speed: int
    pitch: int
    language: str


def make_corpus(
    output_dir: str | os.PathLike[str],
    *,
    num_train: int = 400,
    num_validation: int = 50,
    num_test: int = 50,
    kind: str = "digits",
    languages: Sequence[str] = ("en",),
    seed: int = 0,
    min_words: int = 2,
    max_words: int = 5,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a labelled audiofolder corpus under ``output_dir`` and return its summary.

    Each split directory gets WAV files and a ``metadata.jsonl`` whose rows carry
    ``file_name``, ``text``, ``voice``, ``speed``, ``pitch`` and ``language``.
    Validation and test transcripts never repeat a train transcript (nor each
    other). A split with a count of 0 is not written. If ``output_dir`` already
    holds a complete corpus made with the same parameters, nothing is regenerated.
    """
    return _build_corpus(
        output_dir,
        split_sizes={"train": num_train, "validation": num_validation, "test": num_test},
        labeled=True,
        kind=kind,
        languages=languages,
        seed=seed,
        min_words=min_words,
        max_words=max_words,
        num_workers=num_workers,
        progress=progress,
    )


def make_unlabeled_corpus(
    output_dir: str | os.PathLike[str],
    *,
    num_files: int,
    seed: int = 0,
    num_validation: int = 0,
    kind: str = "digits",
    languages: Sequence[str] = ("en",),
    min_words: int = 2,
    max_words: int = 5,
    num_workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Write an audio-only corpus: ``num_files`` train WAVs, optional validation WAVs.

    The audio matches :func:`make_corpus` with the same arguments, but each
    ``metadata.jsonl`` row holds only ``file_name``.
    """
    return _build_corpus(
        output_dir,
        split_sizes={"train": num_files, "validation": num_validation, "test": 0},
        labeled=False,
        kind=kind,
        languages=languages,
        seed=seed,
        min_words=min_words,
        max_words=max_words,
        num_workers=num_workers,
        progress=progress,
    )


def _build_corpus(
    output_dir: str | os.PathLike[str],
    *,
    split_sizes: dict[str, int],
    labeled: bool,
    kind: str,
    languages: Sequence[str],
    seed: int,
    min_words: int,
    max_words: int,
    num_workers: int,
    progress: bool,
) -> dict[str, Any]:
    languages = list(languages)
    _validate(split_sizes, kind, languages, min_words, max_words, num_workers)
    root = Path(output_dir)
    params = {
        "format_version": _FORMAT_VERSION,
        "labeled": labeled,
        "split_sizes": split_sizes,
        "kind": kind,
        "languages": languages,
        "seed": seed,
        "min_words": min_words,
        "max_words": max_words,
    }
    plan = _plan_utterances(split_sizes, kind, languages, seed, min_words, max_words)

    state = _read_json(root / CORPUS_FILE)
    same_params = state is not None and state.get("params") == params
    if same_params and state.get("complete") and "summary" in state and _is_complete(root, plan):
        return {**state["summary"], "output_dir": str(root)}

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError(f"espeak-ng was not found on PATH; {_INSTALL_HINT}")

    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        reusable = plan.get(split, []) if same_params else []
        _clear_split(root / split, split, keep={u.file_name for u in reusable})
    write_json({"params": params, "complete": False}, root / CORPUS_FILE)
    for split in plan:
        (root / split).mkdir(exist_ok=True)

    todo = [
        (utterance, root / split / utterance.file_name)
        for split, utterances in plan.items()
        for utterance in utterances
        if not (same_params and (root / split / utterance.file_name).exists())
    ]
    _synthesize_all(espeak, todo, num_workers, progress)

    for split, utterances in plan.items():
        rows = [asdict(u) if labeled else {"file_name": u.file_name} for u in utterances]
        write_jsonl(rows, root / split / METADATA_FILE)

    summary = _summarize(root, plan)
    write_json({"params": params, "complete": True, "summary": summary}, root / CORPUS_FILE)
    return summary


def _validate(
    split_sizes: dict[str, int],
    kind: str,
    languages: list[str],
    min_words: int,
    max_words: int,
    num_workers: int,
) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not languages:
        raise ValueError("languages must not be empty")
    supported = DIGIT_WORDS if kind == "digits" else ("en",)
    unsupported = [lang for lang in languages if lang not in supported]
    if unsupported:
        raise ValueError(f"kind={kind!r} supports languages {sorted(supported)}, got {unsupported}")
    if any(size < 0 for size in split_sizes.values()) or not any(split_sizes.values()):
        raise ValueError(f"split sizes must be >= 0 and not all 0, got {split_sizes}")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")


def _plan_utterances(
    split_sizes: dict[str, int],
    kind: str,
    languages: list[str],
    seed: int,
    min_words: int,
    max_words: int,
) -> dict[str, list[_Utterance]]:
    """Draw every utterance's text and voice parameters from one seeded RNG."""
    rng = random.Random(seed)
    train_texts: set[str] = set()
    held_out_texts: set[str] = set()
    plan: dict[str, list[_Utterance]] = {}
    for split in SPLITS:
        size = split_sizes.get(split, 0)
        if size == 0:
            continue
        utterances = []
        for index in range(size):
            language = rng.choice(languages)
            vocabulary = DIGIT_WORDS[language] if kind == "digits" else WORD_VOCABULARY
            for _ in range(_MAX_DRAWS):
                count = rng.randint(min_words, max_words)
                text = " ".join(rng.choice(vocabulary) for _ in range(count))
                if split == "train" or (text not in train_texts and text not in held_out_texts):
                    break
            else:
                raise ValueError(
                    f"could not draw a new {split} transcript in {_MAX_DRAWS} tries; "
                    "widen min_words/max_words or use fewer utterances"
                )
            (train_texts if split == "train" else held_out_texts).add(text)
            utterances.append(
                _Utterance(
                    file_name=f"{split}_{index:06d}.wav",
                    text=text,
                    voice=f"{language}+{rng.choice(VOICE_VARIANTS)}",
                    speed=rng.randint(*SPEED_RANGE),
                    pitch=rng.randint(*PITCH_RANGE),
                    language=language,
                )
            )
        plan[split] = utterances
    return plan


def _synthesize_all(
    espeak: str,
    todo: list[tuple[_Utterance, Path]],
    num_workers: int,
    progress: bool,
) -> None:
    reporter = _Progress(len(todo), enabled=progress)
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        futures = [pool.submit(_synthesize, espeak, u, path) for u, path in todo]
        try:
            for future in as_completed(futures):
                future.result()
                reporter.update()
        finally:
            for future in futures:
                future.cancel()
            reporter.close()


def _synthesize(espeak: str, utterance: _Utterance, path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    command = [espeak, "-v", utterance.voice, "-s", str(utterance.speed)]
    command += ["-p", str(utterance.pitch), "-w", str(partial), utterance.text]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not partial.is_file() or partial.stat().st_size <= 44:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"espeak-ng failed (exit code {result.returncode}) for text "
            f"{utterance.text!r}\ncommand: {shlex.join(command)}\n"
            f"stderr: {result.stderr.strip()}"
        )
    os.replace(partial, path)


def _clear_split(split_dir: Path, split: str, keep: set[str]) -> None:
    """Remove the metadata and any generated WAVs not in ``keep`` from a split dir."""
    if not split_dir.is_dir():
        return
    (split_dir / METADATA_FILE).unlink(missing_ok=True)
    generated = re.compile(rf"\.?{re.escape(split)}_\d+\.wav(\.partial)?")
    for path in split_dir.iterdir():
        if generated.fullmatch(path.name) and path.name not in keep:
            path.unlink()
    if not keep and not any(split_dir.iterdir()):
        split_dir.rmdir()


def _is_complete(root: Path, plan: dict[str, list[_Utterance]]) -> bool:
    for split in SPLITS:
        metadata = root / split / METADATA_FILE
        if split not in plan:
            if metadata.exists():
                return False
            continue
        try:
            lines = metadata.read_text(encoding="utf-8").splitlines()
            names = [json.loads(line)["file_name"] for line in lines]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if names != [u.file_name for u in plan[split]]:
            return False
        if not all((root / split / name).is_file() for name in names):
            return False
    return True


def _summarize(root: Path, plan: dict[str, list[_Utterance]]) -> dict[str, Any]:
    splits = {}
    for split, utterances in plan.items():
        seconds = sum(_wav_seconds(root / split / u.file_name) for u in utterances)
        splits[split] = {"num_utterances": len(utterances), "audio_seconds": round(seconds, 3)}
    return {
        "output_dir": str(root),
        "splits": splits,
        "num_utterances": sum(s["num_utterances"] for s in splits.values()),
        "total_audio_seconds": round(sum(s["audio_seconds"] for s in splits.values()), 3),
    }


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Progress:
    """Progress on stderr: a tqdm bar when tqdm is installed, else a line per 10%."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._total = total
        self._enabled = enabled and total > 0
        self._done = 0
        self._reported = 0
        self._bar: Any = None
        if self._enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                print(f"espeak-ng: synthesizing {total} utterances", file=sys.stderr)
            else:
                self._bar = tqdm(total=total, desc="espeak-ng", unit="utt", file=sys.stderr)

    def update(self) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self._enabled:
            tenths = self._done * 10 // self._total
            if tenths > self._reported:
                self._reported = tenths
                print(f"espeak-ng: {self._done}/{self._total} ({tenths * 10}%)", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
