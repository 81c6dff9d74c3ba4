"""Hostile input, round 2 (issue 23), streaming cases: bad shards (case 8) and a shard list that changed between a
kill and the rerun (case 9). Each test is named after its case in the issue."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_streaming import losses, stream_args

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.data.shard_check import check_shards
from asr_finetune.data.shards import local_rows, write_shards
from asr_finetune.data.streaming import AUDIO_EXTENSIONS
from asr_finetune.errors import DataError, UsageError


@pytest.fixture(scope="module")
def good(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test corpus as 8 train shards and 1 test shard, in both formats: ROOT/parquet and ROOT/tar."""
    root = tmp_path_factory.mktemp("good-shards")
    for fmt in ("parquet", "tar"):
        for split, count in (("train", 8), ("test", 1)):
            write_shards(local_rows(corpus, split), root / fmt, split, count, fmt)
    return root


def tar_members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(info, tar.extractfile(info).read()) for info in tar.getmembers()]


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def no_rows(path: Path) -> None:
    pq.write_table(pq.read_table(path).slice(0, 0), path)


def text_renamed(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.rename_columns(["sentence" if name == "text" else name for name in table.column_names]),
                   path)  # fmt: skip


def first_transcript_removed(path: Path) -> None:
    members = tar_members(path)
    first_json = next(i for i, (info, _) in enumerate(members) if info.name.endswith(".json"))
    write_tar(path, members[:first_json] + members[first_json + 1 :])


def transcripts_as_txt(path: Path) -> None:
    members = []
    for info, data in tar_members(path):
        if info.name.endswith(".json"):
            info.name, data = info.name[: -len(".json")] + ".txt", json.loads(data)["text"].encode()
        members.append((info, data))
    write_tar(path, members)


DAMAGES = {  # case 8's shards: damage, format, what the message says
    "parquet cut in half": (cut_in_half, "parquet", "not a readable parquet file"),
    "0-byte parquet": (lambda path: path.write_bytes(b""), "parquet", "0 bytes"),
    "text column renamed": (text_renamed, "parquet", "no column 'text' \\(set with --text_column_name\\); its "
                            "columns: id, audio, sentence"),
    "tar member without transcript": (first_transcript_removed, "tar", r"train_\d+ has no transcript"),
    "truncated tar": (cut_in_half, "tar", "cut|not a readable tar file"),
    "tar mixing .txt and .json": (transcripts_as_txt, "tar", "its transcripts are .txt files, those of 7 other"),
}  # fmt: skip


def damaged(good: Path, tmp_path: Path, fmt: str, *damages: tuple[int, object]) -> Path:
    """A copy of the ``fmt`` shards with ``damage`` done to train shard ``index`` for each (index, damage)."""
    root = tmp_path / f"damaged-{fmt}"
    shutil.copytree(good / fmt, root)
    shards = sorted((root / "train").iterdir())
    for index, damage in damages:
        damage(shards[index])
    return root


@pytest.mark.parametrize("case", list(DAMAGES))
def test_case08_a_bad_shard_is_named_at_start(case: str, good: Path, tmp_path: Path) -> None:
    damage, fmt, message = DAMAGES[case]
    root = damaged(good, tmp_path, fmt, (3, damage))
    files = sorted(str(path) for path in (root / "train").iterdir())
    builder = "parquet" if fmt == "parquet" else "webdataset"
    with pytest.raises(DataError, match=rf"train-00003-of-00008\.{fmt}.*{message}"):
        check_shards(builder, files, "audio", "text", "error", "the train split", AUDIO_EXTENSIONS)


def test_case08_a_shard_without_rows_is_left_out_in_either_mode(good: Path, tmp_path: Path) -> None:
    root = damaged(good, tmp_path, "parquet", (3, no_rows))
    files = sorted(str(path) for path in (root / "train").iterdir())
    check = check_shards("parquet", files, "audio", "text", "error", "the train split", AUDIO_EXTENSIONS)
    assert check.left_out == {files[3]: "no rows"} and check.files == files[:3] + files[4:]


def test_case08_the_run_stops_at_start_naming_the_shard_train_or_eval(
    good: Path, tiny_model: Path, tmp_path: Path
) -> None:
    root = damaged(good, tmp_path, "parquet", (5, cut_in_half))
    with pytest.raises(DataError, match=r"1 bad shard\(s\) in .* split 'train':\n  .*train-00005-of-00008\.parquet"):
        ctc_main(stream_args(tiny_model, root, tmp_path / "out"), streaming=True)
    assert not (tmp_path / "out" / "checkpoint-1").exists()
    eval_root = tmp_path / "bad-eval"
    shutil.copytree(good / "parquet", eval_root)
    (next((eval_root / "test").iterdir())).write_bytes(b"")
    with pytest.raises(DataError, match=r"split 'test':\n  .*test-00000-of-00001\.parquet: 0 bytes"):
        ctc_main(stream_args(tiny_model, eval_root, tmp_path / "out-eval", "--do_eval"), streaming=True)


@pytest.mark.parametrize("fmt", ["parquet", "tar"])
def test_case08_on_bad_row_skip_leaves_bad_shards_out_and_counts_them(
    fmt: str, good: Path, tiny_model: Path, tmp_path: Path
) -> None:
    if fmt == "parquet":
        damages = [(1, cut_in_half), (2, lambda path: path.write_bytes(b"")), (3, no_rows), (4, text_renamed)]
    else:
        damages = [(1, first_transcript_removed), (2, cut_in_half), (3, transcripts_as_txt)]
    root = damaged(good, tmp_path, fmt, *damages)
    output_dir = tmp_path / "out"
    results = ctc_main(
        stream_args(tiny_model, root, output_dir, "--on_bad_row", "skip", "--max_steps", "12"), streaming=True
    )
    assert results["train_loss"] == results["train_loss"]  # trained, finite
    report = json.loads((output_dir / "data_report.json").read_text())["train"]
    left_out = {Path(path).name: why for path, why in report["shards_left_out"].items()}
    expected = {f"train-0000{index}-of-00008.{fmt}" for index, damage in damages
                if damage is not first_transcript_removed}  # fmt: skip
    assert set(left_out) == expected, left_out
    assert report["shards"] == 8 - len(expected)
    if fmt == "tar":  # the sample without a transcript is a bad row of a good shard: dropped and counted
        assert report["dropped"].get("empty transcripts", 0) >= 1, report


# ---------------------------------------------------------------------------------------------- case 9


def test_case09_a_changed_shard_list_is_refused_by_name_or_restarted_explicitly(
    good: Path, tiny_model: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(good / "parquet", root)
    output_dir = tmp_path / "out"
    args = stream_args(tiny_model, root, output_dir, "--save_steps", "4")
    ctc_main([*args, "--max_steps", "4"], streaming=True)
    removed = sorted((root / "train").iterdir())[-1]
    aside = tmp_path / removed.name
    removed.rename(aside)
    with pytest.raises(
        UsageError,
        match=r"saved reading 8 shard\(s\); the split now has 7 \(removed: "
        r"train/train-00007-of-00008\.parquet\).*--restart_stream",
    ):
        ctc_main([*args, "--max_steps", "8"], streaming=True)
    aside.rename(removed)
    shutil.copy(removed, root / "train" / "train-00008-extra.parquet")
    with pytest.raises(UsageError, match=r"added: train/train-00008-extra\.parquet"):
        ctc_main([*args, "--max_steps", "8"], streaming=True)
    assert not (output_dir / "checkpoint-8").exists()
    ctc_main([*args, "--max_steps", "8", "--restart_stream"], streaming=True)
    assert sorted(losses(output_dir)) == list(range(1, 9))  # resumed at step 5, not started over
    state = json.loads((output_dir / "checkpoint-8" / "trainer_state.json").read_text())
    saved = state["stateful_callbacks"]["StreamStateCallback"]["attributes"]["processes"][0]
    assert len(saved["shards"]) == 9 and "train/train-00008-extra.parquet" in saved["shards"]
