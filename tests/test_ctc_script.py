"""End to end: the CTC script on a small espeak corpus and a tiny model saved to disk."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import pipeline

from asr_finetune.cli.ctc import main
from asr_finetune.data.audio import load_audio
from asr_finetune.evaluation.metrics import error_rates

from conftest import REPO

SCRIPT = REPO / "scripts" / "run_speech_recognition_ctc.py"


def ctc_args(model: Path, corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--dataset_name",
        str(corpus),
        "--output_dir",
        str(output_dir),
        "--train_split_name",
        "train",
        "--eval_split_name",
        "test",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "4",
        "--learning_rate",
        "5e-3",
        "--logging_steps",
        "1",
        "--freeze_feature_encoder",
        "false",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--eval_metrics",
        "wer",
        "cer",
        *extra,
    ]


def losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def trained(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("ctc") / "run"
    main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "12", "--save_steps", "6"))
    return output_dir


def test_loss_falls_and_outputs_are_complete(trained: Path) -> None:
    history = losses(trained)
    assert len(history) == 12
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3 * 0.8
    for name in (
        "vocab.json",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "all_results.json",
        "eval_results.json",
        "data_report.json",
    ):
        assert (trained / name).is_file(), name
    assert not (trained / ".partial-final").exists()
    results = json.loads((trained / "all_results.json").read_text())
    assert 0 <= results["eval_cer"] <= results["eval_wer"] + 1
    rows = [json.loads(line) for line in (trained / "eval_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert {"id", "reference", "hypothesis", "errors"} <= set(rows[0])
    assert rows[0]["id"].endswith("test_000000.wav") and rows[0]["reference"]
    # Whisper's basic normaliser (the default for CTC) scores next to the orthographic WER, in both places.
    assert {"eval_normalized_wer", "eval_normalized_cer"} <= set(results)
    assert {"normalized_reference", "normalized_hypothesis", "normalized_errors"} <= set(rows[0])


def test_evaluation_runs_longest_first_and_reports_in_dataset_order(trained: Path, corpus: Path) -> None:
    import datasets

    from asr_finetune.tasks.finetuning import longest_first
    from asr_finetune.training.train_and_evaluate import DATASET_ROW, in_dataset_order

    split = datasets.Dataset.from_dict({"id": ["a", "b", "c", "d"], "duration": [1.0, 3.0, 2.0, 3.0]})
    ordered = longest_first(split)
    assert ordered["id"] == ["b", "d", "c", "a"] and ordered[DATASET_ROW] == [1, 3, 2, 0]
    rows = [{"id": i} for i in ordered["id"]]
    assert in_dataset_order(rows, type("Eval", (), {"rows": ordered})())[0:4] == [{"id": i} for i in "abcd"]

    # The script's evaluation: eval_predictions.jsonl lists the test split in its own order, each with its text.
    metadata = [json.loads(line) for line in (corpus / "test" / "metadata.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (trained / "eval_predictions.jsonl").read_text().splitlines()]
    assert [Path(row["id"]).name for row in rows] == [Path(m["file_name"]).name for m in metadata]
    assert [row["reference"] for row in rows] == [m["text"] for m in metadata]


def test_output_dir_loads_in_the_asr_pipeline(trained: Path, corpus: Path) -> None:
    asr = pipeline("automatic-speech-recognition", model=str(trained))
    clip = sorted((corpus / "test").glob("*.wav"))[0]
    out = asr({"raw": load_audio(str(clip), 16_000), "sampling_rate": 16_000})
    # The pipeline and the script's own evaluation decode the same clip to the same text.
    rows = [json.loads(line) for line in (trained / "eval_predictions.jsonl").read_text().splitlines()]
    expected = next(row["hypothesis"] for row in rows if row["id"].endswith(clip.name))
    assert out["text"].strip() == expected
    assert set(out["text"]) <= set(json.loads((trained / "vocab.json").read_text())) | {" "}


def test_rerun_resumes_from_the_last_checkpoint(
    trained: Path, tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = tmp_path / "resume"
    import shutil

    shutil.copytree(trained, output_dir)
    (output_dir / "checkpoint-12" / "trainer_state.json").unlink()  # as if killed while saving checkpoint-12
    vocab = (output_dir / "vocab.json").read_bytes()
    with caplog.at_level(logging.WARNING):
        main(
            ctc_args(
                tiny_model, corpus, output_dir, "--do_train", "--max_steps", "15", "--save_steps", "6", "--seed", "1"
            )
        )
    assert "Resuming from" in caplog.text and "checkpoint-6" in caplog.text
    assert "Ignoring incomplete checkpoint" in caplog.text
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 15
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, 16))
    # Steps 1-6 come from checkpoint-6 unchanged; a restart (here with another seed) would recompute them.
    assert losses(output_dir)[:6] == losses(trained)[:6]
    assert (output_dir / "vocab.json").read_bytes() == vocab


def test_eval_only_on_the_fine_tuned_model(trained: Path, corpus: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "eval"
    results = main(ctc_args(trained, corpus, output_dir, "--do_eval", "--train_split_name", "no_such_split"))
    expected = json.loads((trained / "eval_results.json").read_text())["eval_wer"]
    assert results["eval_wer"] == pytest.approx(expected)
    assert (output_dir / "eval_predictions.jsonl").is_file()


def test_train_only_never_reads_the_eval_split(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "train-only"
    main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2", "--eval_split_name", "absent"))
    assert (output_dir / "model.safetensors").is_file()


def test_preprocessing_only_then_training_in_the_same_dir(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "prep"
    main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--preprocessing_only"))
    assert (output_dir / "vocab.json").is_file() and not (output_dir / "model.safetensors").exists()
    main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2"))
    assert (output_dir / "model.safetensors").is_file()


def test_transcripts_ctc_cannot_fit_are_dropped_and_counted(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    clip = sorted((corpus / "train").glob("*.wav"))[0]
    rows = [{"audio": str(clip), "text": "one two"}] * 3 + [{"audio": str(clip), "text": "nine " * 200}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    output_dir = tmp_path / "fit"
    main(ctc_args(tiny_model, tmp_path / "train.jsonl", output_dir, "--do_train", "--preprocessing_only"))
    report = json.loads((output_dir / "data_report.json").read_text())
    assert report["train"]["utterances"] == 3
    assert report["train"]["dropped"] == {"transcripts longer than the model's output frames (CTC cannot fit them)": 1}


def test_cli_reports_a_missing_column_and_exits_2(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    args = ctc_args(tiny_model, corpus, tmp_path / "x", "--do_train", "--text_column_name", "sentence")
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no column 'sentence' (set with --text_column_name)" in proc.stdout + proc.stderr


def test_a_new_vocab_on_a_ctc_checkpoint_reinitialises_the_head_and_says_so(
    trained: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        main(
            ctc_args(
                trained,
                corpus,
                tmp_path / "re",
                "--do_train",
                "--preprocessing_only",
                "--new_vocab",
                "--chars_to_ignore",
                "e",
            )
        )
    assert "CTC head re-initialised" in caplog.text


def test_from_scratch_with_config_name_only(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    args = ctc_args(tiny_model, corpus, tmp_path / "scratch", "--do_train", "--max_steps", "2")
    args[args.index("--model_name_or_path")] = "--config_name"
    main(args)
    assert (tmp_path / "scratch" / "model.safetensors").is_file()


def test_eval_characters_missing_from_the_vocab_are_reported(trained: Path, corpus: Path, tmp_path: Path) -> None:
    clip = sorted((corpus / "test").glob("*.wav"))[0]
    rows = [{"audio": str(clip), "text": "one two ü"}, {"audio": str(clip), "text": "one"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(ctc_args(trained, tmp_path / "test.jsonl", tmp_path / "out", "--do_eval"))
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert report["eval"]["characters_missing_from_vocab"] == {"ü": 1}
    lines = (tmp_path / "out" / "eval_predictions.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["reference"] == "one two ü"


def test_duration_buckets_train_account_and_resume_mid_epoch(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    def run(output_dir: Path) -> None:
        main(
            ctc_args(
                tiny_model,
                corpus,
                output_dir,
                "--do_train",
                "--max_steps",
                "12",
                "--save_steps",
                "10",
                "--max_batch_duration",
                "8",
                "--mask_time_prob",
                "0",
            )
        )

    straight = tmp_path / "straight"
    run(straight)
    results = json.loads((straight / "train_results.json").read_text())
    assert results["train_audio_seconds_per_second"] > 0
    assert 0 <= results["train_padding_fraction"] < 0.15
    assert "train_loader_wait_share" in results  # its arithmetic: test_batching.test_throughput_windows
    state = json.loads((straight / "trainer_state.json").read_text())
    assert "padding_fraction" in state["log_history"][0]
    epochs_at_10 = [e["epoch"] for e in state["log_history"] if e.get("step") == 10][0]
    assert 1 < epochs_at_10 < 2  # checkpoint-10 is in the middle of the second epoch

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    import shutil

    shutil.copytree(straight / "checkpoint-10", resumed / "checkpoint-10")
    shutil.copy(straight / "vocab.json", resumed / "vocab.json")
    run(resumed)

    # Each step's padding fraction fingerprints its batch. Epoch 2 draws new batches; the resumed run trains
    # steps 11-12 on the same batches (and to the same losses) as the uninterrupted one.
    def fingerprints(output_dir: Path) -> dict[int, float]:
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        return {e["step"]: e["padding_fraction"] for e in history if "padding_fraction" in e}

    straight_prints, resumed_prints = fingerprints(straight), fingerprints(resumed)
    per_epoch = max(e["step"] for e in state["log_history"] if "loss" in e and e["epoch"] <= 1.0)
    assert [straight_prints[s] for s in range(1, 4)] != [straight_prints[per_epoch + s] for s in range(1, 4)]
    assert [resumed_prints[s] for s in (11, 12)] == [straight_prints[s] for s in (11, 12)]
    assert losses(resumed)[10:] == pytest.approx(losses(straight)[10:], rel=1e-4)


def static_run(tiny_model: Path, corpus: Path, output_dir: Path, *extra: str) -> dict:
    main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "6", "--max_batch_duration",
                  "8", "--static_shapes", "--num_duration_buckets", "2", "--mask_time_prob", "0", *extra))
    return {**json.loads((output_dir / "train_results.json").read_text()),
            **json.loads((output_dir / "eval_results.json").read_text())}


def test_static_shapes_pad_training_batches_to_their_buckets_length(
    tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        results = static_run(tiny_model, corpus, tmp_path / "static")
    assert "Static shapes: training batches padded to 2 input lengths" in caplog.text
    assert 0 < results["train_padding_fraction"] < 0.5
    rows = [json.loads(line) for line in (tmp_path / "static" / "eval_predictions.jsonl").read_text().splitlines()]
    recomputed = error_rates([r["reference"] for r in rows], [r["hypothesis"] for r in rows])["wer"]
    assert results["eval_wer"] == pytest.approx(recomputed, abs=1e-4)  # evaluation scored these padded batches


@pytest.mark.slow  # ~4 min here: dynamo compiles the model once per shape, on 2 cores
def test_compiled_static_shapes_compile_nothing_new_after_the_first_epoch(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    import torch._dynamo

    def graphs_after(epochs: str) -> int:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        main(ctc_args(tiny_model, corpus, tmp_path / epochs, "--do_train", "--num_train_epochs", epochs,
                      "--max_batch_duration", "8", "--static_shapes", "--num_duration_buckets", "2",
                      "--mask_time_prob", "0", "--torch_compile"))
        return torch._dynamo.utils.counters["stats"]["unique_graphs"]

    one, two = graphs_after("1"), graphs_after("2")
    torch._dynamo.reset()
    # every epoch has the same shapes, each compiled once (and dynamo is told not to go dynamic): without the
    # static padding the second epoch's new lengths would each compile again
    assert one > 0 and two == one, (one, two)


def test_hypotheses_do_not_depend_on_the_eval_batch_size(trained: Path, corpus: Path, tmp_path: Path) -> None:
    """Padded frames of short clips in a batch must decode as blanks, not as trailing junk letters."""

    def hypotheses(batch_size: str) -> list[str]:
        out = tmp_path / f"bs{batch_size}"
        main(ctc_args(trained, corpus, out, "--do_eval", "--per_device_eval_batch_size", batch_size))
        return [json.loads(line)["hypothesis"] for line in (out / "eval_predictions.jsonl").read_text().splitlines()]

    assert hypotheses("8") == hypotheses("1")


def test_gradient_accumulation_logs_the_same_loss_as_a_bigger_batch(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """transformers 5.x skips dividing by the accumulation steps for models whose forward takes **kwargs."""

    def first_loss(name: str, batch: str, accumulate: str) -> float:
        main(
            ctc_args(
                tiny_model,
                corpus,
                tmp_path / name,
                "--do_train",
                "--max_steps",
                "1",
                "--mask_time_prob",
                "0",
                "--per_device_train_batch_size",
                batch,
                "--gradient_accumulation_steps",
                accumulate,
            )
        )
        return losses(tmp_path / name)[0]

    assert first_loss("accumulated", "2", "2") == pytest.approx(first_loss("batch4", "4", "1"), rel=1e-3)
