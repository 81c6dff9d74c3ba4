import json
import shutil
from pathlib import Path

import pytest

from asr_finetune.data.loading import SplitConfig, load_split, prepare_split
from asr_finetune.data.local import discover_local_splits, parse_split_expression
from asr_finetune.data.text import TextNormalizer
from asr_finetune.errors import DataError


def test_split_expressions() -> None:
    parts = parse_split_expression("train+validation[:10]")
    assert [p.name for p in parts] == ["train", "validation"]
    assert parts[1].bounds(50) == (0, 10)
    assert parse_split_expression("test[50%:]")[0].bounds(8) == (4, 8)
    assert parse_split_expression("test[-2:]")[0].bounds(8) == (6, 8)


def test_audiofolder_splits_and_slices(corpus: Path) -> None:
    assert set(discover_local_splits(corpus)) == {"train", "validation", "test"}
    both = load_split(str(corpus), "train[:5]+validation", "audio")
    assert len(both) == 5 + 4
    assert Path(both[0]["audio"]).is_absolute()


def test_unknown_split_lists_available(corpus: Path) -> None:
    with pytest.raises(DataError, match=r"'dev' not found.*test, train, validation"):
        load_split(str(corpus), "train+dev", "audio")


def _manifest(corpus: Path, tmp_path: Path, suffix: str, rows: list[dict]) -> Path:
    """A manifest beside copies of the first clips, paths relative to the manifest."""
    clips = sorted((corpus / "train").glob("*.wav"))
    (tmp_path / "clips").mkdir(exist_ok=True)
    for row, clip in zip(rows, clips, strict=False):
        if row.get("path") == "COPY":
            shutil.copy(clip, tmp_path / "clips" / clip.name)
            row["path"] = f"clips/{clip.name}"
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        keys = list(rows[0])
        path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_paths_are_relative_to_the_manifest(corpus: Path, tmp_path: Path, suffix: str) -> None:
    path = _manifest(corpus, tmp_path, suffix, [{"path": "COPY", "sentence": "one two"} for _ in range(3)])
    config = SplitConfig(str(path), audio_column="path", text_column="sentence")
    dataset, drops = prepare_split(config, "train", TextNormalizer().batch)
    assert len(dataset) == 3 and drops.total == 0
    assert dataset["text"][0] == "one two"
    assert all(d > 0.3 for d in dataset["duration"])


def test_missing_column_lists_the_columns_there(corpus: Path) -> None:
    config = SplitConfig(str(corpus), text_column="sentence")
    with pytest.raises(
        DataError, match=r"no column 'sentence' \(set with --text_column_name\)\. Columns it has: .*audio"
    ):
        prepare_split(config, "train", None)


def _corpus_with_bad_rows(corpus: Path, tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    shutil.copytree(corpus / "train", root / "train")
    (root / "train" / "broken.wav").write_text("not audio")
    lines = (root / "train" / "metadata.jsonl").read_text().splitlines()
    lines.append(json.dumps({"file_name": "broken.wav", "text": "one"}))
    lines.append(json.dumps({"file_name": json.loads(lines[0])["file_name"], "text": " ?! "}))
    (root / "train" / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_bad_rows_stop_the_run_naming_them(corpus: Path, tmp_path: Path) -> None:
    config = SplitConfig(str(_corpus_with_bad_rows(corpus, tmp_path)))
    with pytest.raises(DataError, match=r"(?s)row 32 \(.*broken.wav\): Cannot read audio.*--on_bad_row skip"):
        prepare_split(config, "train", TextNormalizer(["?!"]).batch)


def test_bad_rows_skipped_and_counted_when_asked(corpus: Path, tmp_path: Path) -> None:
    config = SplitConfig(str(_corpus_with_bad_rows(corpus, tmp_path)), on_bad_row="skip")
    dataset, drops = prepare_split(config, "train", TextNormalizer(["?!"]).batch)
    assert len(dataset) == 32
    assert drops.as_dict() == {"unreadable or empty audio": 1, "empty transcripts": 1}


def test_duration_filter_counts_each_reason(corpus: Path) -> None:
    durations = sorted(
        load_split(str(corpus), "train", "audio").map(
            lambda row: {"d": __import__("soundfile").info(row["audio"]).duration}
        )["d"]
    )
    low, high = durations[3], durations[-4]
    config = SplitConfig(str(corpus), min_duration=low, max_duration=high)
    dataset, drops = prepare_split(config, "train", None)
    assert len(dataset) == 32 - 6
    assert sorted(drops.counts.values()) == [3, 3]
    assert all(low <= d <= high for d in dataset["duration"])


def test_max_samples_and_ids(corpus: Path) -> None:
    dataset, _ = prepare_split(SplitConfig(str(corpus)), "test", None, max_samples=3)
    assert len(dataset) == 3
    assert dataset["id"][0].endswith("test_000000.wav")
