"""The model card a fine-tuning run writes, read back the way the Hub reads it (huggingface_hub's ModelCard)."""

import json
from pathlib import Path

from huggingface_hub import ModelCard
from test_faults import ctc_args

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.training.model_card import front_matter, hub_id, loss_rows


def test_a_trained_and_evaluated_run_has_the_card_a_hub_user_expects(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    ctc_main(ctc_args(tiny_model, corpus, out, "--do_train", "--do_eval", "--max_steps", "6", "--eval_strategy",
                      "steps", "--eval_steps", "3", "--save_steps", "3", "--load_best_model_at_end",
                      "--metric_for_best_model", "wer", "--greater_is_better", "false", "--seed", "0"))  # fmt: skip
    card = ModelCard.load(out / "README.md")
    results = json.loads((out / "eval_results.json").read_text())

    assert card.data.pipeline_tag == "automatic-speech-recognition" and card.data.library_name == "transformers"
    assert card.data.base_model is None  # a local path is not a Hub id
    wer = {result.metric_type: result.metric_value for result in card.data.eval_results}["wer"]
    assert wer == round(results["eval_wer"], 6)
    assert card.data.eval_results[0].dataset_split == "test"

    text = card.text
    assert "| learning_rate | 0.005 |" in text and "| total_train_batch_size | 4 |" in text
    loss_table = text.split("## Training loss")[1].split("##")[0]
    assert [line.split("|")[1].strip() for line in loss_table.strip().splitlines()[2:]] == [str(s) for s in range(1, 7)]
    header = loss_table.strip().splitlines()[0]
    assert header == "| step | epoch | training loss | validation loss | wer | normalized wer |"
    state = json.loads((out / "trainer_state.json").read_text())
    assert f"Best checkpoint by wer: `{Path(state['best_model_checkpoint']).name}`" in text
    assert "runtime" not in text  # nothing that changes from one rerun to the next


def test_hub_ids_go_in_the_metadata_and_paths_do_not(tmp_path: Path) -> None:
    assert hub_id("facebook/wav2vec2-base") == "facebook/wav2vec2-base" and hub_id("openai/whisper-tiny.en")
    assert hub_id(str(tmp_path)) is None and hub_id("./model") is None and hub_id(None) is None
    lines = front_matter(base_model="openai/whisper-tiny.en", dataset="mozilla-foundation/common_voice_11_0",
                         dataset_config="hi", eval_split="test", metrics={"eval_wer": 0.25, "eval_normalized_wer": 0.2},
                         name="whisper-hi", language="hi")  # fmt: skip
    (tmp_path / "README.md").write_text("\n".join(lines) + "\nbody\n")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.base_model == "openai/whisper-tiny.en" and data.datasets == ["mozilla-foundation/common_voice_11_0"]
    assert {(r.metric_type, r.metric_name, r.metric_value, r.dataset_config) for r in data.eval_results} == {
        ("wer", "wer", 0.25, "hi"), ("wer", "normalized wer", 0.2, "hi")}


def test_the_loss_table_keeps_at_most_forty_rows_and_the_last() -> None:
    history = [{"step": step, "epoch": step / 10, "loss": 1 / step} for step in range(1, 101)]
    rows = loss_rows(history)
    assert len(rows) == 40 and rows[0]["step"] == 1 and rows[-1]["step"] == 100
