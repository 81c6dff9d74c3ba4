"""Faults and hostile input: every run finishes, skips and counts, or stops with a one-line error (exit 2).

Real files (sox, soundfile), real processes (subprocess: exit codes, locks, kill), a real full disk (a tmpfs).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.cli.seq2seq import main as seq2seq_main
from asr_finetune.training.run_lock import LOCK_FILE

from conftest import REPO, sox

CTC_SCRIPT = REPO / "scripts" / "run_speech_recognition_ctc.py"
PRETRAIN_SCRIPT = REPO / "scripts" / "run_wav2vec2_pretraining_no_trainer.py"
TOKEN = "hf_FakeTokenForTestsOnly0123456789abcd"


def ctc_args(model: Path, dataset: Path | str, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--dataset_name", str(dataset), "--output_dir", str(output_dir),
        "--train_split_name", "train", "--eval_split_name", "test", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4", "--learning_rate", "5e-3", "--logging_steps", "1",
        "--freeze_feature_encoder", "false", "--report_to", "none", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def run_script(script: Path, args: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, str(script), *args], env=environment, capture_output=True, text=True, timeout=timeout
    )


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if " ERROR " in line]


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, no traceback, and one ERROR line holding every fragment."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = error_lines(done)
    assert len(errors) == 1, output[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def small_split(corpus: Path, root: Path, count: int = 8, split: str = "train") -> list[dict]:
    """The first ``count`` rows of a corpus split, with absolute audio paths."""
    rows = [json.loads(line) for line in (corpus / split / "metadata.jsonl").read_text().splitlines()][:count]
    for row in rows:
        row["file_name"] = str(corpus / split / row["file_name"])
    return rows


def write_jsonl_dataset(root: Path, splits: dict[str, list[dict]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


@pytest.fixture(scope="module")
def finished(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CTC run of 4 steps with a checkpoint every 2 (the issue's case)."""
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4", "--save_steps", "2",
                      "--hub_token", TOKEN, "--seed", "3"))
    return output_dir


# ---------------------------------------------------------------------------------------------- 1. reruns


def test_rerun_of_a_finished_command_changes_nothing_and_says_so(
    finished: Path, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "again"
    shutil.copytree(finished, output_dir)
    before = (output_dir / "model.safetensors").read_bytes()
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4",
                                           "--save_steps", "2", "--seed", "3"))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Training is already complete" in done.stdout + done.stderr
    assert (output_dir / "model.safetensors").read_bytes() == before
    assert not (output_dir / "checkpoint-5").exists()
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 4


def test_rerun_after_a_kill_during_the_final_save_publishes_the_last_checkpoint(
    finished: Path, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "cut"
    shutil.copytree(finished, output_dir)
    # Killed while the final model was being written: the staging folder is there, the published files are not.
    (output_dir / ".partial-final").mkdir()
    for name in ("model.safetensors", "trainer_state.json", "train_results.json", "all_results.json"):
        (output_dir / name).unlink()
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "4",
                      "--save_steps", "2", "--seed", "3"))
    published = load_file(output_dir / "model.safetensors")
    checkpoint = load_file(output_dir / "checkpoint-4" / "model.safetensors")
    assert published.keys() == checkpoint.keys()
    assert all(torch.equal(published[k], checkpoint[k]) for k in published)
    assert not (output_dir / ".partial-final").exists()
    assert "eval_wer" in json.loads((output_dir / "all_results.json").read_text())


# ---------------------------------------------------------------------------------------------- 2. non-finite


@pytest.fixture(scope="module")
def nan_dataset(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train split of 8 real clips, one of them a float WAV holding NaN and inf samples."""
    root = tmp_path_factory.mktemp("nan")
    rows = small_split(corpus, root)
    samples, rate = sf.read(rows[5]["file_name"], dtype="float32")
    samples[100:110] = np.nan
    samples[200] = np.inf
    bad = root / "nan_clip.wav"
    sf.write(bad, samples, rate, subtype="FLOAT")
    rows[5] = {**rows[5], "file_name": str(bad), "id": "nan_clip"}
    return write_jsonl_dataset(root / "data", {"train": rows, "test": small_split(corpus, root, 4, "test")})


def test_nan_audio_stops_the_run_naming_the_row(nan_dataset: Path, tiny_model: Path, tmp_path: Path) -> None:
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, nan_dataset, tmp_path / "out", "--do_train",
                                           "--max_steps", "4"))
    assert_one_line_error(done, "nan_clip", "NaN or infinite", "--on_bad_row skip")


def test_nan_audio_is_found_at_start_with_a_full_audio_check(
    nan_dataset: Path, tiny_model: Path, tmp_path: Path
) -> None:
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, nan_dataset, tmp_path / "out", "--do_train",
                                           "--max_steps", "4", "--audio_check", "full"))
    assert_one_line_error(done, "1 bad row(s)")
    assert "nan_clip" in done.stdout + done.stderr and "NaN or infinite" in done.stdout + done.stderr
    assert not (tmp_path / "out" / "checkpoint-1").exists()  # stopped before training


def test_nan_audio_is_skipped_and_counted_when_asked(nan_dataset: Path, tiny_model: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "out"
    ctc_main(ctc_args(tiny_model, nan_dataset, output_dir, "--do_train", "--max_steps", "4",
                      "--on_bad_row", "skip", "--per_device_train_batch_size", "8"))
    results = json.loads((output_dir / "train_results.json").read_text())
    assert results["train_bad_rows_skipped"] == 4  # one clip, once per step: every step sees all 8 rows
    weights = load_file(output_dir / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_exploding_step_stops_naming_the_step_and_saves_nothing_from_it(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "boom"
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "6",
                                           "--save_steps", "1", "--learning_rate", "1e30", "--max_grad_norm", "0"))
    line = assert_one_line_error(done, "Step ", "NaN/inf", "batch: ", "--on_nonfinite_loss skip")
    step = int(line.split("Step ")[1].split(":")[0])
    assert step >= 2
    for checkpoint in output_dir.glob("checkpoint-*"):
        weights = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values()), checkpoint
    assert not (output_dir / f"checkpoint-{step}").exists()


def test_exploding_steps_are_skipped_and_counted_when_asked(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "skip"
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "5", "--learning_rate", "1e30",
                      "--max_grad_norm", "0", "--on_nonfinite_loss", "skip"))
    results = json.loads((output_dir / "train_results.json").read_text())
    assert results["train_nonfinite_steps_skipped"] >= 1
    weights = load_file(output_dir / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


# ---------------------------------------------------------------------------------------------- 3. secrets


def test_tokens_never_reach_the_output_dir(finished: Path) -> None:
    for path in finished.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    card = (finished / "README.md").read_text()
    assert "--hub_token '<redacted>'" in card or "--hub_token <redacted>" in card


def test_hf_token_from_the_environment_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from asr_finetune.training.redaction import redact_argv

    monkeypatch.setenv("HF_TOKEN", "secret-value-123456")
    argv = ["--token=abc", "--dataset_name", "x", "--unk_token", "[UNK]", "--note", "secret-value-123456",
            "--hub_token", TOKEN, "--tokenizer_name_or_path", "tok"]
    assert redact_argv(argv) == ["--token=<redacted>", "--dataset_name", "x", "--unk_token", "[UNK]", "--note",
                                 "<redacted>", "--hub_token", "<redacted>", "--tokenizer_name_or_path", "tok"]


# ---------------------------------------------------------------------------------------------- 4. full disk




def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_full_disk_stops_with_one_line_and_the_rerun_resumes(
    finished: Path, small_disk: Path, tiny_model: Path, corpus: Path
) -> None:
    checkpoint = _size(finished / "checkpoint-2")
    output_dir = small_disk / "run"
    filler = small_disk / "filler"
    # Leave room for the small start-up files and one and a half checkpoints: checkpoint-2 fits, checkpoint-4 not.
    free = shutil.disk_usage(small_disk).free
    with open(filler, "wb") as handle:
        handle.write(b"\0" * (free - int(1.5 * checkpoint) - 256 * 1024))
    args = ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4", "--save_steps", "2",
                    "--seed", "3")
    done = run_script(CTC_SCRIPT, args)
    assert_one_line_error(done, "the disk is full", "rerun")
    assert (output_dir / "checkpoint-2" / "trainer_state.json").is_file()
    filler.unlink()
    again = run_script(CTC_SCRIPT, args)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "Resuming from" in output and "checkpoint-2" in output
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 4


def test_zero_byte_trainer_state_is_not_a_complete_checkpoint(finished: Path, tmp_path: Path) -> None:
    from asr_finetune.training.checkpoints import complete_checkpoints, resolve_resume

    output_dir = tmp_path / "zero"
    shutil.copytree(finished, output_dir)
    (output_dir / "checkpoint-4" / "trainer_state.json").write_bytes(b"")
    assert complete_checkpoints(output_dir) == [output_dir / "checkpoint-2"]
    weights = output_dir / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert complete_checkpoints(output_dir) == []
    assert resolve_resume(output_dir, None) is None


# ---------------------------------------------------------------------------------------------- 6, 7, 9. files


def test_fifo_truncated_flac_and_bad_manifests_are_named(corpus: Path, tiny_model: Path, tmp_path: Path) -> None:
    rows = small_split(corpus, tmp_path, 6)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    flac = tmp_path / "whole.flac"
    sox(rows[2]["file_name"], flac)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    rows[1] = {**rows[1], "file_name": str(fifo), "id": "the_fifo"}
    rows[3] = {**rows[3], "file_name": str(cut), "id": "the_cut_flac"}
    data = write_jsonl_dataset(tmp_path / "data", {"train": rows})
    started = time.monotonic()
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, data, tmp_path / "out", "--do_train", "--max_steps", "2"),
                      timeout=120)
    assert time.monotonic() - started < 120
    assert_one_line_error(done, "2 bad row(s)")
    output = done.stdout + done.stderr
    assert "the_fifo" in output and "FIFO" in output
    assert "the_cut_flac" in output and "truncated" in output


def test_truncated_flac_is_skipped_and_counted_at_start(corpus: Path, tiny_model: Path, tmp_path: Path) -> None:
    rows = small_split(corpus, tmp_path, 6)
    flac = tmp_path / "whole.flac"
    sox(rows[2]["file_name"], flac)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    rows[3] = {**rows[3], "file_name": str(cut), "id": "the_cut_flac"}
    data = write_jsonl_dataset(tmp_path / "data", {"train": rows})
    output_dir = tmp_path / "out"
    ctc_main(ctc_args(tiny_model, data, output_dir, "--do_train", "--max_steps", "3", "--on_bad_row", "skip"))
    report = json.loads((output_dir / "data_report.json").read_text())
    assert report["train"]["dropped"] == {"unreadable or empty audio": 1}
    assert report["train"]["utterances"] == 5


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("train.csv", "file_name,text\n{clip},one two\n{clip},three, four\n", ["line 3", "3 fields", "Quote"]),
        ("train.jsonl", '{{"file_name": "{clip}", "text": "one"}}\n{{"file_name": "{clip}", "text": 42}}\n',
         ["line 2", "int 42", "not text"]),
        ("train.json", '[{{"file_name": "{clip}", "text": "one"}}, ["a", "list"]]', ["row 1", "list"]),
    ],
)
def test_manifest_rows_that_would_be_silently_wrong_are_named(
    name: str, content: str, fragments: list[str], corpus: Path, tmp_path: Path
) -> None:
    from asr_finetune.data.loading import load_split
    from asr_finetune.errors import DataError

    clip = small_split(corpus, tmp_path, 1)[0]["file_name"]
    manifest = tmp_path / name
    manifest.write_text(content.format(clip=clip))
    with pytest.raises(DataError) as caught:
        load_split(str(manifest), "train", "audio", text_column="text")
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    assert str(manifest) in str(caught.value)


def test_csv_byte_order_mark_is_dropped(corpus: Path, tmp_path: Path) -> None:
    from asr_finetune.data.loading import load_split

    clip = small_split(corpus, tmp_path, 1)[0]["file_name"]
    manifest = tmp_path / "train.csv"
    manifest.write_text(f"file_name,text\n{clip},one\n", encoding="utf-8-sig")
    dataset = load_split(str(manifest), "train", "audio", text_column="text")
    assert dataset.column_names == ["audio", "text"] or set(dataset.column_names) == {"audio", "text"}
    assert dataset[0]["text"] == "one"


# ---------------------------------------------------------------------------------------------- 8. unicode


def test_unicode_text_is_nfc_and_turkish_case_is_right(
    corpus: Path, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    rows = small_split(corpus, tmp_path, 8)
    texts = ["İSTANBUL IŞIK", "Cafe\u0301 çay", "KIŞ İYİ", "ılık", "ISTANBUL", "Iğdır", "café", "ışık"]
    rows = [{**row, "text": text} for row, text in zip(rows, texts, strict=True)]
    data = write_jsonl_dataset(tmp_path / "data", {"train": rows})
    output_dir = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        ctc_main(ctc_args(tiny_model, data, output_dir, "--do_train", "--max_steps", "1", "--preprocessing_only",
                          "true", "--dataset_config_name", "tr"))
    assert "Text language 'tr' (from --dataset_config_name)" in caplog.text
    vocab = json.loads((output_dir / "vocab.json").read_text())
    assert "\u0301" not in vocab and "\u0307" not in vocab
    assert {"ı", "i", "é", "ş", "ğ"} <= set(vocab)
    assert "I" not in vocab and "İ" not in vocab


def test_text_language_flag_wins_and_other_languages_keep_unicode_casing() -> None:
    from asr_finetune.data.text import TextNormalizer, resolve_text_language

    assert resolve_text_language("az", ("--dataset_config_name", "en")) == "az"
    assert resolve_text_language(None, ("--dataset_config_name", "clean"), ("--phoneme_language", "tr")) == "tr"
    assert resolve_text_language(None, ("--dataset_config_name", "all")) is None
    assert TextNormalizer(language="az")("IŞIQ İŞ") == "ışıq iş"
    assert TextNormalizer(language="de")("IST") == "ist"


# ---------------------------------------------------------------------------------------------- 10-13. runs


def test_evaluation_split_emptied_by_filtering_stops_at_start(
    corpus: Path, tiny_model: Path, tmp_path: Path
) -> None:
    rows = small_split(corpus, tmp_path, 4)
    long_text = [{**row, "text": "one two three four five six seven eight nine " * 20} for row in rows[:2]]
    data = write_jsonl_dataset(tmp_path / "data", {"train": rows, "test": long_text})
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, data, tmp_path / "out", "--do_train", "--do_eval",
                                           "--max_steps", "2"))
    assert_one_line_error(done, "No usable rows left in the eval split", "CTC cannot fit")


def test_second_run_in_the_same_output_dir_is_refused_naming_the_first(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "shared"
    first = subprocess.Popen(
        [sys.executable, str(CTC_SCRIPT), *ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps",
                                                    "400")],
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            if (output_dir / LOCK_FILE).is_file() and (output_dir / LOCK_FILE).read_text():
                break
            time.sleep(0.1)
        second = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2"))
        assert_one_line_error(second, "is in use by another run", f"pid {first.pid}", socket.gethostname())
    finally:
        first.kill()
        first.wait()
    # The first run was killed -9: its lock is stale and the next run takes over.
    third = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "1",
                                            "--resume_from_checkpoint", "false"))
    assert third.returncode == 0, (third.stdout + third.stderr)[-3000:]
    assert "Taking over the stale lock" in third.stdout + third.stderr
    assert not (output_dir / LOCK_FILE).exists()


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--eval_metrics", "wer", "foo"], ["--eval_metrics", "foo"]),
        (["--max_steps", "0"], ["--max_steps 0"]),
        (["--fp16"], ["--fp16 needs a CUDA GPU"]),
        (["--resume_from_checkpoint", "/nonexistent/checkpoint-9"], ["/nonexistent/checkpoint-9"]),
    ],
)
def test_argument_mistakes_stop_at_start_in_one_line(
    extra: list[str], fragments: list[str], tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, tmp_path / "out", "--do_train", *extra))
    assert_one_line_error(done, *fragments)


def test_abbreviated_flags_are_refused(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, tmp_path / "out", "--do_train",
                                           "--learning_rat", "5"))
    assert_one_line_error(done, "--learning_rat")


def test_push_to_hub_without_the_hub_stops_at_start(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    done = run_script(CTC_SCRIPT, ctc_args(tiny_model, corpus, tmp_path / "out", "--do_train", "--max_steps", "1",
                                           "--push_to_hub"), HF_TOKEN=TOKEN)
    line = assert_one_line_error(done, "--push_to_hub")
    assert TOKEN not in done.stdout + done.stderr, line


def test_pretraining_mistakes_end_in_one_line_too(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    done = run_script(PRETRAIN_SCRIPT, ["--dataset_name", str(corpus), "--model_name_or_path", str(tiny_model),
                                        "--output_dir", str(tmp_path / "p"), "--dataset_split_names", "nosuchsplit"])
    assert_one_line_error(done, "nosuchsplit")


def test_output_files_share_one_mode(finished: Path) -> None:
    modes = {oct(path.stat().st_mode & 0o777) for path in finished.rglob("*") if path.is_file()}
    assert len(modes) == 1, modes


def test_transcribe_reports_a_bad_file_and_goes_on(finished: Path, corpus: Path, tmp_path: Path) -> None:
    good = sorted((corpus / "test").glob("*.wav"))[:2]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    files = [str(good[0]), str(empty), str(tmp_path / "missing.wav"), str(good[1])]
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "transcribe.py"), "--model", str(finished), *files],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    transcribed = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert transcribed == [str(good[0]), str(good[1])]
    assert f"{empty}\tERROR" in done.stderr and "missing.wav\tERROR" in done.stderr
    assert "Transcribed 2 of 4 file(s)" in done.stderr and "2 file(s) failed" in done.stderr


class _FailingDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        from asr_finetune.errors import DataError

        raise DataError(f"Row {index} (clip.wav): Cannot decode audio clip.wav: truncated.")


def test_an_error_raised_in_a_loader_worker_keeps_its_type_and_one_line_message() -> None:
    from asr_finetune.errors import DataError, one_line

    loader = torch.utils.data.DataLoader(_FailingDataset(), num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)
    assert one_line(caught.value) == "Row 0 (clip.wav): Cannot decode audio clip.wav: truncated."


def test_rerun_of_a_finished_seq2seq_command_changes_nothing(corpus: Path, tmp_path: Path) -> None:
    from asr_finetune.tools.tiny_models import save_tiny_whisper

    texts = [json.loads(line)["text"] for line in (corpus / "train" / "metadata.jsonl").read_text().splitlines()]
    model = save_tiny_whisper(tmp_path / "whisper", texts, d_model=32, layers=1, heads=2)
    args = [
        "--model_name_or_path", str(model), "--dataset_name", str(corpus), "--output_dir", str(tmp_path / "out"),
        "--train_split_name", "train", "--per_device_train_batch_size", "4", "--max_steps", "3",
        "--save_steps", "2", "--report_to", "none", "--disable_tqdm", "true", "--do_train", "--language", "en",
    ]  # fmt: skip
    seq2seq_main(args)
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    done = run_script(REPO / "scripts" / "run_speech_recognition_seq2seq.py", args)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "Training is already complete" in done.stdout + done.stderr
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 3
