"""Real recordings as corpora our scripts read (a folder per split with ``metadata.jsonl``, 16 kHz mono WAV),
rebuilt from their public sources; the audio never enters this repository.

- **One speaker reading prompts**, split by prompt (no held-out sentence is ever trained on):
  - a folder of ``wav/NAME.wav`` beside ``text/NAME.txt`` (MaryTTS voice-building layout; for example
    github.com/somtts/voicebuilding_seminar_16: 892 CMU ARCTIC prompts read by one British English speaker, with
    an ``ERRORS`` list of takes to leave out);
  - one long recording timed by a chronological Praat TextGrid (github.com/ioonaa/voice-ktn-data, CC BY-ND 4.0:
    612 ARCTIC prompts, Canadian English, the 48 kHz FLAC a release asset).
- **A general set** of other speakers, never trained on: it measures what fine-tuning on one speaker costs
  elsewhere. LJSpeech-layout folders (``metadata.csv`` of ``id|text|normalised text`` beside ``wavs/``), or such a
  metadata file itself: LJSpeech-1.1 (public domain), the 32 clips coqui-ai/TTS keeps in ``tests/data/ljspeech``.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from asr_finetune.errors import DataError

RATE = 16_000
PROMPT_LABEL = re.compile(r"^arctic_[ab]\d{4}$")
INTERVAL = re.compile(r"^(\d+) ([-\d.eE+]+) ([-\d.eE+]+)\s*$")


@dataclass(frozen=True)
class Prompt:
    """One read prompt: its label (``arctic_a0001``), where it lies in the recording, and its sentence."""

    label: str
    start: float
    end: float
    text: str


def chronological_textgrid_prompts(text: str, source: str = "TextGrid") -> list[Prompt]:
    """The prompts of a chronological Praat TextGrid whose tier 1 holds prompt labels and tier 2 their sentences
    (voice-ktn's ``voice-ktn-chrono.TextGrid``), in recording order."""
    lines = text.splitlines()
    tiers: dict[int, dict[tuple[float, float], str]] = {1: {}, 2: {}}
    for index, line in enumerate(lines[:-1]):
        match = INTERVAL.match(line)
        if match and int(match[1]) in tiers and lines[index + 1].strip().startswith('"'):
            tiers[int(match[1])][(float(match[2]), float(match[3]))] = lines[index + 1].strip().strip('"')
    prompts = [Prompt(label, start, end, tiers[2].get((start, end), "").strip())
               for (start, end), label in tiers[1].items() if PROMPT_LABEL.match(label)]  # fmt: skip
    if not prompts:
        raise DataError(f"{source}: no prompt intervals (tier 1 labels such as arctic_a0001). Is it the "
                        "chronological TextGrid (voice-ktn-chrono.TextGrid)?")  # fmt: skip
    untexted = [prompt.label for prompt in prompts if not prompt.text]
    if untexted:
        raise DataError(f"{source}: {len(untexted)} prompt(s) without a sentence on tier 2, first {untexted[0]}.")
    return sorted(prompts, key=lambda prompt: prompt.start)


def split_prompts(prompts: Sequence[Prompt], sizes: dict[str, int], seed: int = 0) -> dict[str, list[Prompt]]:
    """Prompts drawn at random (seeded) into splits of the given sizes, in that order (``{"test": 50, ...}``); a
    sentence read twice stays in the split its first reading went to. Prompts left over are not used."""
    order = sorted(prompts, key=lambda prompt: prompt.label)
    random.Random(seed).shuffle(order)
    splits: dict[str, list[Prompt]] = {name: [] for name in sizes}
    placed: dict[str, str] = {}
    names = iter(sizes)
    current = next(names, None)
    for prompt in order:
        key = prompt.text.lower().strip(" .,!?")
        if key in placed:
            if len(splits[placed[key]]) < sizes[placed[key]]:
                splits[placed[key]].append(prompt)
            continue
        while current is not None and len(splits[current]) >= sizes[current]:
            current = next(names, None)
        if current is None:
            break
        placed[key] = current
        splits[current].append(prompt)
    return splits


def folder_prompts(folder: Path, exclude: Sequence[str] = ()) -> list[Prompt]:
    """The prompts of a ``wav/NAME.wav`` + ``text/NAME.txt`` folder (clip lengths from the WAV headers), less
    those named in ``exclude`` or in the folder's ``ERRORS`` file."""
    folder = Path(folder)
    wavs, texts = folder / "wav", folder / "text"
    if not wavs.is_dir() or not texts.is_dir():
        raise DataError(f"{folder}: expected wav/ and text/ folders (wav/NAME.wav beside text/NAME.txt).")
    errors = folder.parent / "ERRORS" if not (folder / "ERRORS").is_file() else folder / "ERRORS"
    left_out = set(exclude) | (set(errors.read_text(encoding="utf-8").split()) if errors.is_file() else set())
    prompts = []
    for wav in sorted(wavs.glob("*.wav")):
        text_file = texts / f"{wav.stem}.txt"
        if wav.stem in left_out or not text_file.is_file():
            continue
        text = " ".join(text_file.read_text(encoding="utf-8").split())
        if text:
            prompts.append(Prompt(wav.stem, 0.0, soundfile.info(str(wav)).duration, text))
    if not prompts:
        raise DataError(f"{folder}: no wav/NAME.wav with a non-empty text/NAME.txt.")
    return prompts


def _write_clip(samples: np.ndarray, rate: int, path: Path) -> float:
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != RATE:
        samples = soxr.resample(samples, rate, RATE, quality="HQ")
    soundfile.write(str(path), samples.astype(np.float32), RATE, subtype="PCM_16")
    return len(samples) / RATE


def _write_metadata(folder: Path, rows: Iterable[dict]) -> None:
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


SOURCE_NOTE = ("Real recordings cut and resampled by scripts/build_real_corpus.py from {source}. Not for "
               "redistribution: see the source's licence.\n")


def build_prompt_corpus(
    output_dir: Path, sizes: dict[str, int], *, folder: Path | None = None, textgrid: Path | None = None,
    flac: Path | None = None, seed: int = 0,
) -> dict[str, dict]:
    """One speaker's prompts as ``output_dir/<split>`` for each split of ``sizes``: from a ``wav/`` + ``text/``
    ``folder``, or from one recording (``flac``) timed by a chronological ``textgrid``."""
    if folder is not None:
        prompts, source, recording = folder_prompts(folder), str(folder), None
    else:
        prompts = chronological_textgrid_prompts(Path(textgrid).read_text(encoding="utf-8"), str(textgrid))
        source = str(flac)
        try:
            recording = soundfile.SoundFile(str(flac))
        except (OSError, RuntimeError) as err:
            raise DataError(f"{flac}: not a readable audio file ({err}). Download the recording the TextGrid "
                            "times (voice-ktn.flac from the voice-ktn-data release page).") from err  # fmt: skip
        length = recording.frames / recording.samplerate
        if prompts[-1].end > length + 1.0:
            recording.close()
            raise DataError(f"{flac}: {length:.0f} s long, but the TextGrid times prompts up to "
                            f"{prompts[-1].end:.0f} s: another recording, or a cut file.")  # fmt: skip
    summary = {}
    try:
        for name, members in split_prompts(prompts, sizes, seed).items():
            if not members:
                continue
            split_dir = output_dir / name
            split_dir.mkdir(parents=True, exist_ok=True)
            rows, seconds = [], 0.0
            for prompt in sorted(members, key=lambda prompt: prompt.label):
                if recording is None:
                    samples, rate = soundfile.read(str(Path(folder) / "wav" / f"{prompt.label}.wav"), dtype="float32")
                else:
                    rate = recording.samplerate
                    recording.seek(int(prompt.start * rate))
                    samples = recording.read(int((prompt.end - prompt.start) * rate), dtype="float32")
                seconds += _write_clip(samples, rate, split_dir / f"{prompt.label}.wav")
                rows.append({"file_name": f"{prompt.label}.wav", "text": prompt.text})
            _write_metadata(split_dir, rows)
            summary[name] = {"clips": len(rows), "seconds": round(seconds, 1)}
    finally:
        if recording is not None:
            recording.close()
    (output_dir / "SOURCE.txt").write_text(SOURCE_NOTE.format(source=source), encoding="utf-8")
    return summary


def build_ljspeech(sources: Sequence[Path], output_dir: Path, split: str = "general",
                   limit: int | None = None) -> dict:
    """The clips of LJSpeech-layout sources (a folder with ``metadata.csv`` and ``wavs/``, or a metadata file
    beside ``wavs/``) as ``output_dir/split``, at most ``limit`` from each, with the normalised transcript
    (numbers spelled out) where the metadata has one. Clips are named ``<source number>-<id>.wav``."""
    folder = output_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    rows, seconds, missing = [], 0.0, 0
    for number, source in enumerate(sources):
        metadata = Path(source) if Path(source).is_file() else Path(source) / "metadata.csv"
        if not metadata.is_file():
            raise DataError(f"{source}: no metadata.csv (an LJSpeech-layout folder has metadata.csv and wavs/).")
        taken = 0
        with open(metadata, encoding="utf-8", newline="") as handle:
            for fields in csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE):
                if len(fields) < 2 or fields[0] in ("audio_file", "id"):
                    continue
                clip_id = Path(fields[0]).stem
                text = (fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]).strip()
                wav = metadata.parent / "wavs" / f"{clip_id}.wav"
                if not wav.is_file() or not text:
                    missing += 1
                    continue
                samples, rate = soundfile.read(str(wav), dtype="float32")
                name = f"{number}-{clip_id}.wav"
                seconds += _write_clip(samples, rate, folder / name)
                rows.append({"file_name": name, "text": text})
                taken += 1
                if limit and taken >= limit:
                    break
        if not taken:
            raise DataError(f"{metadata}: no row has its wavs/ID.wav and a transcript.")
    _write_metadata(folder, rows)
    return {"clips": len(rows), "seconds": round(seconds, 1), "missing": missing}
