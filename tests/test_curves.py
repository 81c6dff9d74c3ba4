"""training_curves.png after every evaluation, and --report_to tensorboard with real scalars read back."""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.training import curves

from conftest import read_png, tensorboard_scalars


def test_ctc_run_redraws_curves_at_each_evaluation_and_writes_tensorboard(
    tiny_model: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[int, str]] = []  # (evaluations in the history, hash of the PNG just written)
    write = curves.write_training_curves

    def recording(history: list[dict], output_dir: str) -> bool:
        written = write(history, output_dir)
        png = Path(output_dir) / curves.CURVES_FILE
        drawn.append((sum("eval_wer" in record for record in history), hashlib.sha1(png.read_bytes()).hexdigest()))
        return written

    monkeypatch.setattr(curves, "write_training_curves", recording)
    output_dir = tmp_path / "run"
    ctc_main([
        "--model_name_or_path", str(tiny_model), "--dataset_name", str(corpus), "--output_dir", str(output_dir),
        "--train_split_name", "train", "--eval_split_name", "test", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4", "--learning_rate", "5e-3", "--logging_steps", "1",
        "--freeze_feature_encoder", "false", "--disable_tqdm", "true", "--eval_metrics", "wer", "cer",
        "--do_train", "--do_eval", "--max_steps", "6", "--eval_strategy", "steps", "--eval_steps", "3",
        "--report_to", "tensorboard",
    ])  # fmt: skip

    # Redrawn after the evaluations at steps 3 and 6, at the end of training, and after the final evaluation;
    # each evaluation changes the picture.
    counts = [count for count, _ in drawn]
    assert counts[:2] == [1, 2] and counts[-1] == 3, counts
    assert drawn[0][1] != drawn[1][1] != drawn[-1][1]
    image = read_png(output_dir / curves.CURVES_FILE)
    assert image.shape[0] > 400 and image.shape[1] > 600
    assert not list(output_dir.glob(".*.partial"))

    # TensorBoard holds the same losses the Trainer logged, step by step, and the evaluation WER.
    state = json.loads((output_dir / "trainer_state.json").read_text())
    logged = {r["step"]: r["loss"] for r in state["log_history"] if "loss" in r}
    found = tensorboard_scalars(output_dir / "runs")
    assert len(logged) == 6
    assert dict(found["train/loss"]) == pytest.approx(logged, rel=1e-5)
    wers = {r["step"]: r["eval_wer"] for r in state["log_history"] if "eval_wer" in r}
    assert dict(found["eval/wer"]) == pytest.approx(wers, rel=1e-5)
    assert "train/audio_seconds_per_second" in found

    # A rerun of the finished command trains nothing; its evaluation redraws the picture from the run's history
    # (it used to draw from an empty history at step 0, losing the training curves).
    drawn.clear()
    histories: list[list[dict]] = []
    monkeypatch.setattr(curves, "write_training_curves", lambda history, out: histories.append(list(history)) or
                        write(history, out))
    ctc_main(["--model_name_or_path", str(tiny_model), "--dataset_name", str(corpus), "--output_dir", str(output_dir),
          "--train_split_name", "train", "--eval_split_name", "test", "--per_device_eval_batch_size", "4",
          "--do_train", "--do_eval", "--max_steps", "6", "--eval_metrics", "wer", "--report_to", "none"])
    assert histories and sum("loss" in record for record in histories[-1]) == 6
    assert max(record.get("step", 0) for record in histories[-1]) == 6


def history(evaluations: int) -> list[dict]:
    records = [{"step": s, "loss": 5.0 / s, "learning_rate": 1e-3 * s, "audio_seconds_per_second": 40.0 + s}
               for s in range(1, 9)]  # fmt: skip
    records += [{"step": 4 * (n + 1), "eval_loss": 3.0 - n, "eval_wer": 0.9 - 0.3 * n, "eval_cer": 0.5 - 0.2 * n}
                for n in range(evaluations)]  # fmt: skip
    return records


def test_callback_rewrites_the_picture_only_on_the_main_process(tmp_path: Path) -> None:
    callback = curves.TrainingCurvesCallback()
    args = SimpleNamespace(output_dir=str(tmp_path))
    png = tmp_path / curves.CURVES_FILE
    callback.on_evaluate(args, SimpleNamespace(is_world_process_zero=False, log_history=history(1)), None)
    assert not png.exists()
    callback.on_evaluate(args, SimpleNamespace(is_world_process_zero=True, log_history=history(1)), None)
    first = read_png(png)
    callback.on_evaluate(args, SimpleNamespace(is_world_process_zero=True, log_history=history(2)), None)
    second = read_png(png)
    assert first.shape == second.shape and not np.array_equal(first, second)
    # The final evaluation (Trainer.predict) is not in the log history: the callback adds it.
    state = SimpleNamespace(is_world_process_zero=True, log_history=history(2), global_step=8)
    callback.on_predict(args, state, None, metrics={"eval_wer": 0.2, "eval_cer": 0.1})
    assert not np.array_equal(second, read_png(png))


def test_scores_panel_takes_every_eval_score_but_not_timings() -> None:
    records = [{"step": 2, "eval_wer": 0.5, "eval_runtime": 3.0, "eval_loss": 1.0, "eval_exact_words": 0.1}]
    assert curves.eval_scores(records) == ["eval_wer", "eval_exact_words"]
    assert curves.series([{"step": 1, "loss": 2}, {"step": 2}, {"loss": 3}], "loss") == ([1.0], [2.0])


def test_nothing_logged_writes_no_picture(tmp_path: Path) -> None:
    assert curves.write_training_curves([{"step": 0, "train_runtime": 1.0}], tmp_path) is False
    assert not (tmp_path / curves.CURVES_FILE).exists()
