"""Hostile input, round 2 (issue 23): resumes that must not silently ignore what changed, checkpoints that are
only partly there, racing locks, JSON configs. Each test is named after its case in the issue."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_faults import ctc_args

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.errors import UsageError
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2
from asr_finetune.training.checkpoints import checkpoint_problem
from asr_finetune.training.run_flags import RUN_FLAGS_FILE


@pytest.fixture(scope="module")
def reference(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``o_ref``: a finished CTC run of 4 steps with a checkpoint every 2."""
    output_dir = tmp_path_factory.mktemp("reference") / "run"
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4", "--save_steps", "2",
                      "--seed", "0"))  # fmt: skip
    return output_dir


def copy_of(reference: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(reference, target)
    return target


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file() and not p.name.startswith("_")}


def test_every_checkpoint_records_the_flags_it_was_trained_with(reference: Path, tiny_model: Path) -> None:
    for checkpoint in ("checkpoint-2", "checkpoint-4"):
        flags = json.loads((reference / checkpoint / RUN_FLAGS_FILE).read_text())
        assert flags["task"] == "ctc" and flags["model_name_or_path"] == str(tiny_model)
        assert flags["learning_rate"] == 5e-3 and flags["lr_scheduler_type"] == "linear"


def test_case01_resume_with_another_tokenizer_is_refused_and_the_vocab_kept(
    reference: Path, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = copy_of(reference, tmp_path)
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    for name in ("vocab.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (reference / name).is_file():
            shutil.copy(reference / name, other / name)
    vocab = json.loads((other / "vocab.json").read_text())
    letters = [token for token in vocab if len(token) == 1 and token.isalpha()][:2]
    kept = [token for token in vocab if token not in letters]
    (other / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(kept)}))
    before = snapshot(output_dir)
    with pytest.raises(UsageError, match=r"--tokenizer_name_or_path .*other-tokenizer \(the checkpoint: None\)"):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "6", "--save_steps", "2",
                          "--seed", "0", "--tokenizer_name_or_path", str(other)))  # fmt: skip
    assert snapshot(output_dir) == before  # vocab.json, config.json: nothing written


def test_case02_resume_with_another_model_of_the_same_shape_is_refused(
    reference: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = copy_of(reference, tmp_path)
    other = save_tiny_wav2vec2(tmp_path / "other-model", seed=5, hidden_size=32, layers=2, conv_channels=32)
    with pytest.raises(UsageError, match=r"--model_name_or_path .*other-model \(the checkpoint: .*\)"):
        ctc_main(ctc_args(other, corpus, output_dir, "--do_train", "--max_steps", "6", "--save_steps", "2",
                          "--seed", "0"))  # fmt: skip


@pytest.mark.parametrize("flag, value, shown", [("--learning_rate", "1e-3", "0.001"),
                                                ("--lr_scheduler_type", "constant", "constant"),
                                                ("--per_device_train_batch_size", "2", "2")])  # fmt: skip
def test_case03_resume_with_another_learning_rate_or_schedule_is_refused(
    reference: Path, tiny_model: Path, corpus: Path, tmp_path: Path, flag: str, value: str, shown: str
) -> None:
    output_dir = copy_of(reference, tmp_path)
    args = ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "6", "--save_steps", "2",
                    "--seed", "0")  # fmt: skip
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    with pytest.raises(UsageError, match=rf"{flag} {shown} \(the checkpoint: .*--resume_from_checkpoint false"):
        ctc_main(args)
    assert not (output_dir / "checkpoint-6").exists()


def test_unchanged_flags_and_a_larger_max_steps_go_on(
    reference: Path, tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = copy_of(reference, tmp_path)
    with caplog.at_level(logging.WARNING):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "6", "--save_steps", "2",
                          "--seed", "0"))  # fmt: skip
    assert "Resuming from" in caplog.text and "checkpoint-4" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 6


@pytest.mark.parametrize("damage", ["truncated optimizer.pt", "empty rng_state.pth"])
def test_case11_a_checkpoint_with_a_broken_torch_file_is_skipped(
    reference: Path, tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    output_dir = copy_of(reference, tmp_path)
    latest = output_dir / "checkpoint-4"
    if damage.startswith("truncated"):
        data = (latest / "optimizer.pt").read_bytes()
        (latest / "optimizer.pt").write_bytes(data[: len(data) // 2])
    else:
        (latest / "rng_state.pth").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4", "--save_steps", "2",
                          "--seed", "0"))  # fmt: skip
    assert "checkpoint-4" in caplog.text and ("cut off" in caplog.text or "empty" in caplog.text)
    assert "Resuming from" in caplog.text and str(output_dir / "checkpoint-2") in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 4


def test_case12_another_architecture_under_the_same_model_path_is_one_line(
    corpus: Path, tmp_path: Path
) -> None:
    model = save_tiny_wav2vec2(tmp_path / "model", hidden_size=32, layers=2, conv_channels=32)
    output_dir = tmp_path / "run"
    ctc_main(ctc_args(model, corpus, output_dir, "--do_train", "--max_steps", "2", "--save_steps", "2"))
    shutil.rmtree(model)
    save_tiny_wav2vec2(model, hidden_size=48, layers=2, conv_channels=32)  # same path, another shape
    with pytest.raises(UsageError, match=r"checkpoint-2 holds a model of another shape .*size mismatch.*"
                                         r"--resume_from_checkpoint false"):  # fmt: skip
        ctc_main(ctc_args(model, corpus, output_dir, "--do_train", "--max_steps", "4", "--save_steps", "2"))


def _contend(directory: str, start, done, results) -> None:
    from asr_finetune.training.run_lock import acquire

    start.wait()
    try:
        acquire(directory)
        results.put("held")
    except UsageError:
        results.put("refused")
    done.wait()  # a winner keeps its lock (and its live pid) until every process has tried


def test_case06_a_stale_lock_is_taken_over_by_exactly_one_of_six_processes(tmp_path: Path) -> None:
    import multiprocessing
    import socket

    from asr_finetune.training.run_lock import LOCK_FILE

    context = multiprocessing.get_context("fork")
    dead = context.Process(target=lambda: None)
    dead.start()
    dead.join()  # a pid that ran here and is gone
    for trial in range(50):  # the race hit 4 of 100 trials before the takeover guard
        directory = tmp_path / f"out{trial}"
        directory.mkdir()
        (directory / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
        start, done, results = context.Barrier(6), context.Barrier(6), context.Queue()
        workers = [context.Process(target=_contend, args=(str(directory), start, done, results)) for _ in range(6)]
        for worker in workers:
            worker.start()
        outcomes = sorted(results.get(timeout=60) for _ in workers)
        for worker in workers:
            worker.join(timeout=60)
        assert outcomes == ["held"] + ["refused"] * 5, (trial, outcomes)


# ---------------------------------------------------------------------------------------------- 13. JSON configs


def parse_config(tmp_path: Path, config: dict, *flags: str) -> tuple:
    from asr_finetune.args import parse_args
    from asr_finetune.tools.recipes import script_arguments

    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"model_name_or_path": "m", "dataset_name": "d", "output_dir": str(tmp_path / "o"),
                                **config}))  # fmt: skip
    return parse_args(script_arguments("ctc"), [str(path), *flags])


def test_case13_json_values_are_type_checked_like_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    *_, training = parse_config(tmp_path, {"do_train": "false", "do_eval": True})
    assert training.do_train is False and training.do_eval is True  # "false" is false, not a truthy string
    with pytest.raises(SystemExit) as exit_status:
        parse_config(tmp_path, {"max_steps": "ten"})
    assert exit_status.value.code == 2
    assert "--max_steps/--max-steps: invalid int value: 'ten'" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r'flags.json: "max_steps" is null'):
        parse_config(tmp_path, {"max_steps": None})
    with pytest.raises(UsageError, match=r'flags.json: "learning_rate" takes one value, not a list \(\[1, 2\]\)'):
        parse_config(tmp_path, {"learning_rate": [1, 2]})
    with caplog.at_level(logging.WARNING):
        *_, training = parse_config(tmp_path, {"overwrite_output_dir": "false"})
    assert training.resume_from_checkpoint is None and "starting fresh" not in caplog.text


def test_case13_flags_after_a_json_file_override_it(tmp_path: Path) -> None:
    model, data, *_, training = parse_config(tmp_path, {"learning_rate": 0.1}, "--learning_rate", "0.002",
                                             "--dataset_name", "other")  # fmt: skip
    assert training.learning_rate == 0.002 and data.dataset_name == "other" and model.model_name_or_path == "m"


# ---------------------------------------------------------------------------------------------- 4. best model

NAN_MODULE = """
import datasets
import evaluate


class NanScore(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="always NaN", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        return {"nan_score": float("nan")}
"""


def test_case04_a_nan_metric_for_best_model_is_said_not_silent(
    tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("evaluate")
    module = tmp_path / "nan_score"
    module.mkdir()
    (module / "nan_score.py").write_text(NAN_MODULE)
    output_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4", "--eval_strategy",
                          "steps", "--eval_steps", "2", "--save_steps", "2", "--load_best_model_at_end", "true",
                          "--metric_for_best_model", "nan_score", "--eval_metrics", "wer", str(module)))  # fmt: skip
    assert "--metric_for_best_model nan_score is nan at step 2" in caplog.text
    assert "--metric_for_best_model nan_score is nan at step 4" in caplog.text
    assert "no best checkpoint was kept, the final model is the last step's" in caplog.text
    assert json.loads((output_dir / "trainer_state.json").read_text())["best_model_checkpoint"] is None


# ---------------------------------------------------------------------------------------------- 18. small


def test_case18_a_negative_batch_duration_is_refused_as_such(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--max_batch_duration -5.0: give a positive number of seconds"):
        parse_config(tmp_path, {}, "--max_batch_duration", "-5")


def test_case18_a_rerun_of_a_finished_command_leaves_every_file_byte_for_byte(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "run"
    args = ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2", "--save_steps", "2")
    ctc_main(args)
    before = snapshot(output_dir)
    ctc_main(args)
    after = snapshot(output_dir)
    # tokenizer_config.json, the model card, data_report.json: nothing a finished run made is rewritten differently
    assert {name for name in before if before[name] != after.get(name)} == set()


def test_case18_publishing_the_final_model_from_the_checkpoint_rewrites_train_results(
    reference: Path, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    output_dir = copy_of(reference, tmp_path)
    (output_dir / "model.safetensors").unlink()  # killed during the final save
    (output_dir / "train_results.json").write_text(json.dumps({"global_step": 1, "train_loss": 9.9}))  # stale
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "4", "--save_steps", "2",
                      "--seed", "0"))  # fmt: skip
    results = json.loads((output_dir / "train_results.json").read_text())
    assert results["global_step"] == 4 and results["published_from"].endswith("checkpoint-4")
    assert (output_dir / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------- 15, 17. transcribe


@pytest.fixture(scope="module")
def transcribed_model(reference: Path) -> Path:
    return reference  # a finished CTC output dir: a model asr-transcribe loads


def transcribe(*argv: str) -> tuple[int, str, str]:
    import io

    from asr_finetune.cli.transcribe import run

    out, err = io.StringIO(), io.StringIO()
    status = run(["--no_progress", *argv], out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_case15_transcripts_never_replace_a_file_they_did_not_write(
    transcribed_model: Path, corpus: Path, tmp_path: Path
) -> None:
    model = copy_of(transcribed_model, tmp_path)
    clip = tmp_path / "config.wav"
    shutil.copy(sorted((corpus / "test").glob("*.wav"))[0], clip)
    config = (model / "config.json").read_bytes()
    status, _, err = transcribe("--model", str(model), "--output_dir", str(model), "--output_format", "json",
                                str(clip))  # fmt: skip
    assert status == 2 and f"would write {model / 'config.json'}, which exists and was not written" in err
    assert (model / "config.json").read_bytes() == config
    out_dir = tmp_path / "transcripts"
    assert transcribe("--model", str(model), "--output_dir", str(out_dir), str(clip))[0] == 0
    assert transcribe("--model", str(model), "--output_dir", str(out_dir), str(clip))[0] == 0  # a rerun replaces
    assert (out_dir / "config.txt").is_file() and (out_dir / ".asr-transcribe-outputs.json").is_file()


def test_case17_an_unwritable_output_dir_is_refused_before_the_model_loads(
    transcribed_model: Path, corpus: Path, tmp_path: Path
) -> None:
    clip = str(sorted((corpus / "test").glob("*.wav"))[0])
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    status, _, err = transcribe("--model", str(tmp_path / "no-model"), "--output_dir", str(a_file), clip)
    assert status == 2 and f"--output_dir {a_file}: cannot write there" in err  # before "--model: not a model"


def test_case17_fifos_and_dangling_links_in_a_folder_are_counted(
    transcribed_model: Path, corpus: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(sorted((corpus / "test").glob("*.wav"))[0], folder / "good.wav")
    os.mkfifo(folder / "pipe.wav")
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    status, out, err = transcribe("--model", str(transcribed_model), str(folder))
    assert status == 1 and out.startswith(f"{folder / 'good.wav'}\t")
    assert "Transcribed 1 of 3 file(s)" in err and "2 file(s) failed" in err
    assert f"{folder / 'pipe.wav'}\tERROR" in err and f"{folder / 'gone.wav'}\tERROR" in err


# ---------------------------------------------------------------------------------------------- 14. evaluate modules

MODULE_TEMPLATE = """
import datasets
import evaluate

CALLS = []


class {cls}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="test", citation="", inputs_description="",
                                   features=datasets.Features({{"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}}))

    def _compute(self, predictions, references):
        CALLS.append(1)
        if len(CALLS) > {good_calls}:
            raise RuntimeError("broken on call " + str(len(CALLS)))
        return {{"{name}": 0.5}}
"""


def write_metric(root: Path, name: str, good_calls: int) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    cls = "".join(part.title() for part in name.split("_"))
    (folder / f"{name}.py").write_text(MODULE_TEMPLATE.format(cls=cls, name=name, good_calls=good_calls))
    return folder


@pytest.mark.parametrize("name, good_calls, message", [
    ("broken_score", 0, "scoring one pair of texts failed (RuntimeError: broken on call 1)"),
    ("wer", 99, "its scores would be named 'wer', the built-in metric's"),
])  # fmt: skip
def test_case14_a_module_that_cannot_score_or_takes_a_builtin_name_is_refused_at_start(
    tiny_model: Path, corpus: Path, tmp_path: Path, name: str, good_calls: int, message: str
) -> None:
    pytest.importorskip("evaluate")
    module = write_metric(tmp_path / "metrics", name, good_calls)
    output_dir = tmp_path / "run"
    with pytest.raises(UsageError, match=re.escape(message)):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2", "--eval_metrics", "wer",
                          str(module)))  # fmt: skip
    assert not any(output_dir.glob("checkpoint-*"))


def test_case14_a_module_failing_mid_run_loses_no_checkpoint(
    tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("evaluate")
    module = write_metric(tmp_path / "metrics", "flaky_score", good_calls=1)  # the start-up check passes
    output_dir = tmp_path / "run"
    with caplog.at_level(logging.ERROR):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2", "--eval_strategy",
                          "steps", "--eval_steps", "2", "--save_steps", "2", "--eval_metrics", "wer",
                          str(module)))  # fmt: skip
    assert f"--eval_metrics {module} failed on this evaluation (RuntimeError: broken on call 2)" in caplog.text
    assert checkpoint_problem(output_dir / "checkpoint-2") is None
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    assert any("eval_wer" in entry and math.isnan(entry["eval_flaky_score"]) for entry in history)


# ---------------------------------------------------------------------------------------------- 10. disks and paths


@pytest.mark.parametrize("pages_free", [0, 1, 2, 3, 5, 8, 12])
def test_case10_a_full_disk_anywhere_in_an_eval_run_is_one_line_and_leaves_no_broken_file(
    reference: Path, corpus: Path, small_disk: Path, pages_free: int
) -> None:
    output_dir = small_disk / "eval"
    filler = small_disk / "filler"
    filler.unlink(missing_ok=True)
    free = shutil.disk_usage(small_disk).free
    with open(filler, "wb") as handle:
        handle.write(b"\0" * (free - pages_free * 4096))
    try:
        ctc_main(ctc_args(reference, corpus, output_dir, "--do_eval"))
    except UsageError as err:
        assert "the disk is full" in str(err) and "rerun" in str(err)
    for path in output_dir.rglob("*") if output_dir.exists() else ():
        if path.is_file():
            assert path.stat().st_size > 0, path  # every write is whole or absent
            if path.suffix == ".json":
                json.loads(path.read_text())
    assert not (output_dir / "_asr_finetune.lock").exists()


def test_case10_an_output_dir_that_is_a_file_or_read_only_is_one_line(
    reference: Path, corpus: Path, small_disk: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(UsageError, match=r"--output_dir .*a-file is a file, not a folder"):
        ctc_main(ctc_args(reference, corpus, a_file, "--do_eval"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(UsageError, match=r"Cannot write to .*: the file system is read-only"):
            ctc_main(ctc_args(reference, corpus, small_disk / "out", "--do_eval"))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


# ---------------------------------------------------------------------------------------------- 5. locks across hosts


def test_case05_a_lock_from_another_host_is_a_lease(tmp_path: Path) -> None:
    from asr_finetune.training import run_lock

    path = tmp_path / run_lock.LOCK_FILE
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "earlier"}))
    with pytest.raises(UsageError, match=r"in use by another run \(pid 1 on elsewhere.*5 minutes after its last"):
        run_lock.acquire(tmp_path)  # renewed just now: a live run on another machine
    stale = time.time() - run_lock.LEASE_S - 60
    os.utime(path, (stale, stale))
    try:
        assert run_lock.acquire(tmp_path) == path  # a killed run's lock: taken over, no hand deletion
        assert json.loads(path.read_text())["pid"] == os.getpid()
        os.utime(path, (stale, stale))
        run_lock.renew_leases()  # what the holder's heartbeat does every 30 s
        assert time.time() - path.stat().st_mtime < 60
    finally:
        run_lock.release_all()
    assert not path.exists()
