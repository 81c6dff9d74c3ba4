import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from asr_finetune.evaluation.metrics import error_rates, utterance_report
from asr_finetune.training.checkpoints import checkpoint_problem, complete_checkpoints, resolve_resume


def test_error_rates() -> None:
    rates = error_rates(["one two three", "four"], ["one too three", "four five"], ["wer", "cer"])
    assert rates["wer"] == pytest.approx(2 / 4)
    assert 0 < rates["cer"] < rates["wer"]


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="bleu"):
        error_rates(["a"], ["a"], ["bleu"])


def test_utterance_report_counts_errors_per_utterance() -> None:
    rows = utterance_report(["u1", "u2", "u3"], ["one two", "three", ""], ["one", "three four", "five"])
    assert [row["errors"] for row in rows] == [1, 1, 1]
    assert rows[0]["deletions"] == 1 and rows[1]["insertions"] == 1
    assert rows[0]["id"] == "u1" and rows[1]["hypothesis"] == "three four"


def _checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint folder with real (tiny) safetensors weights; the state file, written last, only if complete."""
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.ones(4)}, path / "model.safetensors")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_checkpoint_with_cut_weights_or_empty_state_is_incomplete(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 1)
    cut = _checkpoint(tmp_path, 2)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    empty = _checkpoint(tmp_path, 3)
    (empty / "trainer_state.json").write_text("")
    no_weights = _checkpoint(tmp_path, 4)
    (no_weights / "model.safetensors").unlink()
    assert checkpoint_problem(cut) == "model.safetensors is cut off"
    assert checkpoint_problem(empty) == "trainer_state.json is empty or cut off"
    assert checkpoint_problem(no_weights) == "no model weights"
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-1"]


def test_half_written_checkpoint_is_never_resumed(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, complete=False)
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-10"]
    assert resolve_resume(tmp_path, None) == str(tmp_path / "checkpoint-10")


def test_numeric_order_and_fresh_start(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 100)
    assert resolve_resume(tmp_path, None) == str(tmp_path / "checkpoint-100")
    assert resolve_resume(tmp_path, "false") is None
    assert resolve_resume(tmp_path, None, start_fresh=True) is None


def test_explicit_resume_without_checkpoint_is_an_error(tmp_path: Path) -> None:
    assert resolve_resume(tmp_path, None) is None
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_resume(tmp_path, "true")
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume(tmp_path, str(_checkpoint(tmp_path, 5, complete=False)))


def test_whisper_normalisers_remove_formatting_not_words() -> None:
    from asr_finetune.evaluation.metrics import TranscriptMetrics, make_eval_normalizer

    english, basic = make_eval_normalizer("english"), make_eval_normalizer("basic")
    assert english("I paid $29 for the aligner.") == english("i paid twenty nine dollars for the aligner")
    assert english("Mr. Smith, um, two nine three four zero") == "mister smith 29340"
    assert basic("Bonjour, Monsieur Dupont !") == "bonjour monsieur dupont"
    assert make_eval_normalizer("none") is None

    class Identity(TranscriptMetrics):
        def decode(self, ids):
            return list(ids)

    metrics = Identity(["the aligner", "it cost twenty dollars"], ["wer"], english)
    result = metrics(type("P", (), {"predictions": ["The aligner.", "It cost $20."]})())
    assert result["wer"] > 0.5 and result["normalized_wer"] == 0.0
    assert metrics.normalized_forms()["normalized_hypotheses"] == ["the aligner", "it cost $20"]
