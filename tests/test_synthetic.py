"""Tests for the espeak-ng synthetic corpus generator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_finetune.tools.synthetic import (
    CORPUS_FILE,
    DIGIT_WORDS,
    METADATA_FILE,
    PITCH_RANGE,
    SPEED_RANGE,
    VOICE_VARIANTS,
    WORD_VOCABULARY,
    make_corpus,
    make_unlabeled_corpus,
)

from conftest import require

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = {"num_train": 12, "num_validation": 3, "num_test": 3}
SPLIT_COUNTS = {"train": 12, "validation": 3, "test": 3}

def read_metadata(split_dir: Path) -> list[dict]:
    lines = (split_dir / METADATA_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def corpus_texts(root: Path, split: str) -> list[str]:
    return [row["text"] for row in read_metadata(root / split)]


OLD_MTIME_NS = 946_684_800 * 10**9  # 2000-01-01: no write made during the test can leave this time on a file


def age_files(root: Path) -> None:
    """Set every file's modification time to 2000-01-01, so any later write shows, however coarse the clock."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))


def rewritten(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.stat().st_mtime_ns != OLD_MTIME_NS
    )


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != CORPUS_FILE
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    require("espeak-ng")
    root = tmp_path_factory.mktemp("corpus") / "digits"
    summary = make_corpus(root, **SIZES, seed=0, progress=False)
    return root, summary


def test_layout_and_metadata(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    assert sorted(p.name for p in root.iterdir()) == [
        CORPUS_FILE,
        "test",
        "train",
        "validation",
    ]
    for split, count in SPLIT_COUNTS.items():
        rows = read_metadata(root / split)
        assert len(rows) == count
        wavs = sorted(p.name for p in (root / split).iterdir() if p.suffix == ".wav")
        assert sorted(row["file_name"] for row in rows) == wavs
        assert sorted(p.name for p in (root / split).iterdir()) == sorted([*wavs, METADATA_FILE])
        for row in rows:
            assert set(row) == {"file_name", "text", "voice", "speed", "pitch", "language"}
            words = row["text"].split(" ")
            assert 2 <= len(words) <= 5
            assert set(words) <= set(DIGIT_WORDS["en"])
            assert row["language"] == "en"
            language, variant = row["voice"].split("+")
            assert language == "en" and variant in VOICE_VARIANTS
            assert SPEED_RANGE[0] <= row["speed"] <= SPEED_RANGE[1]
            assert PITCH_RANGE[0] <= row["pitch"] <= PITCH_RANGE[1]
        assert summary["splits"][split]["num_utterances"] == count
    assert summary["num_utterances"] == sum(SPLIT_COUNTS.values())
    all_rows = [row for split in SPLIT_COUNTS for row in read_metadata(root / split)]
    assert len({row["voice"] for row in all_rows}) > 1
    assert len({row["speed"] for row in all_rows}) > 1
    assert len({row["pitch"] for row in all_rows}) > 1


def test_wavs_are_native_mono_speech(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    for split in SPLIT_COUNTS:
        total_seconds = 0.0
        for row in read_metadata(root / split):
            path = root / split / row["file_name"]
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
            audio, _ = sf.read(path, dtype="float32")
            assert audio.ndim == 1
            assert np.sqrt(np.mean(audio**2)) > 0.01
            assert np.abs(audio).max() > 0.1
            num_words = len(row["text"].split())
            duration = len(audio) / info.samplerate
            assert 0.2 * num_words <= duration <= 0.9 * num_words + 1.0, (row, duration)
            total_seconds += duration
        assert summary["splits"][split]["audio_seconds"] == pytest.approx(total_seconds, abs=0.01)


def test_same_seed_is_identical_and_other_seed_differs(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = corpus
    again = tmp_path / "again"
    make_corpus(again, **SIZES, seed=0, num_workers=1, progress=False)
    assert file_bytes(again) == file_bytes(root)

    other = tmp_path / "other"
    make_corpus(other, **SIZES, seed=1, progress=False)
    for split in SPLIT_COUNTS:
        assert read_metadata(other / split) != read_metadata(root / split)


def test_held_out_transcripts_never_appear_in_train(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = corpus
    train = set(corpus_texts(root, "train"))
    assert not train & set(corpus_texts(root, "test") + corpus_texts(root, "validation"))
    # One-word digit transcripts: only 10 exist, so collisions are likely
    # unless held-out splits are resampled.
    for seed in range(5):
        out = tmp_path / f"tiny{seed}"
        make_corpus(
            out,
            num_train=6,
            num_validation=2,
            num_test=2,
            min_words=1,
            max_words=1,
            seed=seed,
            progress=False,
        )
        train = set(corpus_texts(out, "train"))
        held_out = corpus_texts(out, "validation") + corpus_texts(out, "test")
        assert not train & set(held_out)
        assert len(set(held_out)) == len(held_out)


def test_exhausted_transcript_space_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="could not draw"):
        make_corpus(
            tmp_path / "c",
            num_train=1,
            num_validation=6,
            num_test=5,
            min_words=1,
            max_words=1,
            progress=False,
        )


def test_rerun_with_same_params_does_not_regenerate(corpus: tuple[Path, dict]) -> None:
    root, summary = corpus
    age_files(root)
    assert make_corpus(root, **SIZES, seed=0, progress=False) == summary
    assert rewritten(root) == []


def test_changed_params_regenerate_and_drop_stale_files(tmp_path: Path) -> None:
    root = tmp_path / "c"
    make_corpus(root, num_train=4, num_validation=1, num_test=1, progress=False)
    summary = make_corpus(root, num_train=2, num_validation=1, num_test=0, progress=False)
    assert summary["splits"].keys() == {"train", "validation"}
    assert not (root / "test").exists()
    assert sorted(p.name for p in (root / "train").iterdir()) == [
        METADATA_FILE,
        "train_000000.wav",
        "train_000001.wav",
    ]
    assert len(read_metadata(root / "train")) == 2


def test_incomplete_corpus_is_repaired(tmp_path: Path) -> None:
    root = tmp_path / "c"
    params = {"num_train": 4, "num_validation": 1, "num_test": 1, "progress": False}
    make_corpus(root, **params)
    reference = file_bytes(root)
    (root / "train" / "train_000002.wav").unlink()
    (root / "test" / METADATA_FILE).unlink()
    age_files(root)
    make_corpus(root, **params)
    assert file_bytes(root) == reference
    # Of the clips, only the deleted one was synthesised again (manifests are small and rewritten whole).
    assert [name for name in rewritten(root) if name.endswith(".wav")] == ["train/train_000002.wav"]


def test_unlabeled_corpus_has_same_audio_and_only_file_names(tmp_path: Path) -> None:
    unlabeled = tmp_path / "unlabeled"
    summary = make_unlabeled_corpus(unlabeled, num_files=4, num_validation=1, seed=3, progress=False)
    assert summary["splits"].keys() == {"train", "validation"}
    assert not (unlabeled / "test").exists()
    labeled = tmp_path / "labeled"
    make_corpus(labeled, num_train=4, num_validation=1, num_test=0, seed=3, progress=False)
    for split in ("train", "validation"):
        rows = read_metadata(unlabeled / split)
        assert all(set(row) == {"file_name"} for row in rows)
        assert rows == [{"file_name": row["file_name"]} for row in read_metadata(labeled / split)]
        for row in rows:
            name = row["file_name"]
            assert (unlabeled / split / name).read_bytes() == (labeled / split / name).read_bytes()


def test_multilingual_digits_use_each_languages_words(tmp_path: Path) -> None:
    root = tmp_path / "multi"
    languages = ("en", "de", "es", "fr")
    make_corpus(
        root,
        num_train=12,
        num_validation=0,
        num_test=0,
        languages=languages,
        progress=False,
    )
    rows = read_metadata(root / "train")
    assert {row["language"] for row in rows} == set(languages)
    for row in rows:
        assert row["voice"].startswith(row["language"] + "+")
        assert set(row["text"].split()) <= set(DIGIT_WORDS[row["language"]])
        assert sf.info(root / "train" / row["file_name"]).duration > 0.3


def test_words_kind_uses_english_vocabulary(tmp_path: Path) -> None:
    root = tmp_path / "words"
    make_corpus(root, num_train=6, num_validation=1, num_test=1, kind="words", progress=False)
    for split in ("train", "validation", "test"):
        for text in corpus_texts(root, split):
            assert text == text.lower()
            assert set(text.split()) <= set(WORD_VOCABULARY)
    with pytest.raises(ValueError, match="supports languages"):
        make_corpus(tmp_path / "de", kind="words", languages=("de",), progress=False)


def test_missing_espeak_raises_with_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        make_corpus(tmp_path / "c", num_train=2, num_validation=1, num_test=1)
    assert not (tmp_path / "c" / "train" / METADATA_FILE).exists()


def install_failing_espeak(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir.mkdir()
    fake = bin_dir / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'synthesis exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return fake


def test_failing_espeak_reports_text_and_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install_failing_espeak(tmp_path / "bin", monkeypatch)
    with pytest.raises(RuntimeError) as excinfo:
        make_corpus(tmp_path / "c", num_train=2, num_validation=0, num_test=0)
    message = str(excinfo.value)
    assert "exit code 3" in message
    assert "synthesis exploded" in message
    assert "-w" in message and str(fake) in message
    assert not (tmp_path / "c" / "train" / METADATA_FILE).exists()
    assert not list((tmp_path / "c" / "train").glob("*.wav"))


def test_interrupted_regeneration_never_reuses_old_audio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"num_train": 4, "num_validation": 1, "num_test": 1, "progress": False}
    fresh = tmp_path / "fresh"
    make_corpus(fresh, **sizes, seed=1)
    root = tmp_path / "c"
    make_corpus(root, **sizes, seed=0)
    with monkeypatch.context() as patch:
        install_failing_espeak(tmp_path / "bin", patch)
        with pytest.raises(RuntimeError):
            make_corpus(root, **sizes, seed=1)
    make_corpus(root, **sizes, seed=1)
    assert file_bytes(root) == file_bytes(fresh)


def test_failure_midway_leaves_no_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = {"num_train": 6, "num_validation": 2, "num_test": 2, "num_workers": 1, "progress": False}
    reference = tmp_path / "reference"
    make_corpus(reference, **sizes)
    poison = corpus_texts(reference, "test")[-1]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "espeak-ng"
    real = shutil.which("espeak-ng")
    wrapper.write_text(f'#!/bin/sh\nfor last; do :; done\n[ "$last" = "{poison}" ] && exit 3\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    root = tmp_path / "c"
    with monkeypatch.context() as patch:
        patch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        with pytest.raises(RuntimeError, match=poison):
            make_corpus(root, **sizes)
    assert len(list(root.rglob("*.wav"))) > 0
    assert not list(root.rglob(METADATA_FILE))
    assert json.loads((root / CORPUS_FILE).read_text())["complete"] is False
    make_corpus(root, **sizes)
    assert file_bytes(root) == file_bytes(reference)


def test_speed_parameter_reaches_espeak(tmp_path: Path) -> None:
    root = tmp_path / "c"
    make_corpus(root, num_train=20, num_validation=0, num_test=0, min_words=4, max_words=4, progress=False)
    rows = read_metadata(root / "train")
    durations = [sf.info(root / "train" / row["file_name"]).duration for row in rows]
    speeds = [row["speed"] for row in rows]
    assert np.corrcoef(speeds, durations)[0, 1] < -0.5


def test_progress_lines_without_tqdm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    make_corpus(tmp_path / "c", num_train=10, num_validation=0, num_test=0)
    err = capsys.readouterr().err
    assert "10/10 (100%)" in err
    assert err.count("%)") == 10


@pytest.mark.parametrize("unlabeled", [False, True])
def test_cli(tmp_path: Path, unlabeled: bool) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "src"), env.get("PYTHONPATH")) if p)
    out = tmp_path / "cli"
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "make_synthetic_corpus.py"),
        "--output_dir", str(out),
        "--num_train", "3",
        "--num_validation", "1",
        "--num_test", "1",
        "--languages", "en", "fr",
        "--seed", "7",
        "--no_progress",
    ] + (["--unlabeled"] if unlabeled else [])  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    summary = json.loads(result.stdout)
    expected = {"train": 3, "validation": 1} | ({} if unlabeled else {"test": 1})
    counts = {split: s["num_utterances"] for split, s in summary["splits"].items()}
    assert counts == expected
    assert summary["total_audio_seconds"] > 1.0
    assert len(read_metadata(out / "train")) == 3
