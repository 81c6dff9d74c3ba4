"""scripts/build_real_corpus.py: a recording timed by a chronological Praat TextGrid cut into one clip per prompt
(split by prompt), and an LJSpeech-layout folder as the general set, read back by our data loading."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from asr_finetune.data.local import discover_local_splits, load_local
from asr_finetune.errors import DataError
from asr_finetune.tools.real_corpus import chronological_textgrid_prompts, split_prompts

from conftest import REPO, require, sox

SENTENCES = ["the cat sat on the mat", "a red ball rolls away", "she reads a book at night",
             "two birds sing in the tree", "the old man walks home", "we eat bread and soup"]  # fmt: skip


def textgrid(intervals: list[tuple[float, float, str, str]], total: float) -> str:
    """A chronological TextGrid in voice-ktn's layout: tier 1 prompt labels, tier 2 sentences."""
    lines = ['"Praat chronological TextGrid text file"', f"0 {total}   ! Time domain.", "2   ! Number of tiers.",
             f'"IntervalTier" "labels" 0 {total}', f'"IntervalTier" "sentences" 0 {total}', ""]  # fmt: skip
    for start, end, label, sentence in intervals:
        lines += ["! labels:", f"1 {start} {end}", f'"{label}"', "", "! sentences:", f"2 {start} {end}",
                  f'"{sentence}"', ""]  # fmt: skip
    return "\n".join(lines)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[tuple[float, float]]]:
    """Six espeak sentences in one 48 kHz FLAC with 0.5 s pauses, and the TextGrid that times them."""
    folder = tmp_path_factory.mktemp("ktn")
    espeak = require("espeak-ng")
    parts, spans, now = [], [], 0.5
    sox("-n", "-r", "48000", "-c", "1", folder / "pause.wav", "trim", "0", "0.5")
    parts.append(folder / "pause.wav")
    for index, sentence in enumerate(SENTENCES):
        raw = folder / f"s{index}.wav"
        subprocess.run([espeak, "-w", str(raw), sentence], check=True)
        sox(raw, "-r", "48000", folder / f"r{index}.wav")
        seconds = soundfile.info(str(folder / f"r{index}.wav")).duration
        spans.append((now, now + seconds))
        parts += [folder / f"r{index}.wav", folder / "pause.wav"]
        now += seconds + 0.5
    sox(*parts, folder / "voice.flac")
    intervals = [(start, end, f"arctic_a{index + 1:04d}", SENTENCES[index])
                 for index, (start, end) in enumerate(spans)]  # fmt: skip
    grid = folder / "chrono.TextGrid"
    grid.write_text(textgrid([(0.0, 0.5, "", ""), *intervals], now))
    return grid, folder / "voice.flac", spans


def test_prompts_are_read_in_order_with_their_sentences(recording: tuple) -> None:
    grid, _, spans = recording
    prompts = chronological_textgrid_prompts(grid.read_text())
    assert [prompt.text for prompt in prompts] == SENTENCES
    assert [(prompt.start, prompt.end) for prompt in prompts] == pytest.approx(spans)


def test_a_textgrid_without_prompts_or_sentences_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="x.TextGrid: no prompt intervals"):
        chronological_textgrid_prompts(textgrid([(0.0, 1.0, "x", "")], 1.0), "x.TextGrid")
    with pytest.raises(DataError, match="1 prompt\\(s\\) without a sentence on tier 2, first arctic_a0001"):
        chronological_textgrid_prompts(textgrid([(0.0, 1.0, "arctic_a0001", "")], 1.0))


def test_a_sentence_read_twice_stays_in_one_split() -> None:
    from asr_finetune.tools.real_corpus import Prompt

    prompts = [Prompt(f"arctic_a{i:04d}", i, i + 1, "Same words." if i in (0, 5) else f"s {i}") for i in range(12)]
    splits = split_prompts(prompts, {"test": 3, "validation": 3, "train": 6})
    where = {name for name, members in splits.items() for p in members if p.text == "Same words."}
    assert len(where) == 1  # both readings in one split, or the second left out when that split is full
    assert [len(members) for members in splits.values()] in ([3, 3, 6], [3, 3, 5])
    assert split_prompts(prompts, {"test": 3}) == split_prompts(prompts, {"test": 3})  # seeded


def run_builder(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_real_corpus.py"), *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout)


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


def test_the_script_cuts_a_timed_recording_into_splits_our_loader_reads(recording: tuple, tmp_path: Path) -> None:
    grid, flac, spans = recording
    out = tmp_path / "real"
    summary = run_builder("--output_dir", str(out), "--voice_ktn", str(grid), str(flac), "--test", "2",
                          "--validation", "1", "--train", "3")  # fmt: skip
    assert {name: split["clips"] for name, split in summary.items()} == {"test": 2, "validation": 1, "train": 3}
    texts = {name: {row["text"] for row in rows(out / name)} for name in summary}
    assert set().union(*texts.values()) == set(SENTENCES)  # every prompt once, no sentence in two splits
    test_row = rows(out / "test")[0]
    index = SENTENCES.index(test_row["text"])
    clip = soundfile.info(str(out / "test" / test_row["file_name"]))
    assert clip.samplerate == 16_000 and clip.duration == pytest.approx(spans[index][1] - spans[index][0], abs=0.01)
    assert set(discover_local_splits(out)) == {"train", "validation", "test"}
    train = load_local(str(out), "train", "audio", "text")
    assert sorted(train["text"]) == sorted(texts["train"])


def test_the_script_reads_a_prompt_folder_and_general_sets(speech_wav: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "wav").mkdir(parents=True)
    (data / "text").mkdir()
    for index in range(5):
        sox(speech_wav, "-r", "16000", data / "wav" / f"arctic_a{index:04d}.wav")
        (data / "text" / f"arctic_a{index:04d}.txt").write_text(f"sentence number {index}\n")
    (data / "text" / "arctic_a0003.txt").write_text("")  # no transcript: not used
    (data / "ERRORS").write_text("arctic_a0004\n")  # a take the speaker's group marked as bad
    lj = tmp_path / "lj"
    (lj / "wavs").mkdir(parents=True)
    sox(speech_wav, lj / "wavs" / "LJ001-0001.wav")
    (lj / "metadata.csv").write_text("LJ001-0001|It cost 2 dollars.|It cost two dollars.\nLJ001-0002|no audio|\n")
    other = tmp_path / "other"
    (other / "wavs").mkdir(parents=True)
    sox(speech_wav, other / "wavs" / "LJ001-0001.wav")
    (other / "transcript.csv").write_text("LJ001-0001|Read by someone else.|Read by someone else.\n")
    out = tmp_path / "real"
    summary = run_builder("--output_dir", str(out), "--prompts", str(data), "--test", "1", "--validation", "1",
                          "--train", "5", "--general", str(lj), str(other / "transcript.csv"))  # fmt: skip
    assert {name: split["clips"] for name, split in summary.items()} == {
        "test": 1, "validation": 1, "train": 1, "general": 2}
    assert summary["general"]["missing"] == 1
    assert [row["text"] for row in rows(out / "general")] == ["It cost two dollars.", "Read by someone else."]
    assert [row["file_name"] for row in rows(out / "general")] == ["0-LJ001-0001.wav", "1-LJ001-0001.wav"]


def test_a_recording_shorter_than_its_textgrid_is_refused(recording: tuple, speech_wav: Path, tmp_path: Path) -> None:
    grid, _, _ = recording
    from asr_finetune.tools.real_corpus import build_prompt_corpus

    with pytest.raises(DataError, match="TextGrid times prompts up to"):
        build_prompt_corpus(tmp_path / "out", {"test": 1}, textgrid=grid, flac=speech_wav)
