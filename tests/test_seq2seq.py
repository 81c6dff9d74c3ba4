"""Sequence-to-sequence fine-tuning: the warm-started wav2vec2 + BART-like pair and a tiny Whisper, end to end.

Every model is built from a config by the project's code and saved to a directory; tokenizers are trained on the
corpus text. Nothing reaches a hub.
"""

import json
import logging
import runpy
from pathlib import Path

import numpy as np
import pytest
from transformers import (
    AutoModelForSpeechSeq2Seq,
    AutoProcessor,
    EvalPrediction,
    Seq2SeqTrainingArguments,
    pipeline,
)

from asr_finetune.args import parse_args
from asr_finetune.cli.seq2seq import main
from asr_finetune.data.audio import load_audio
from asr_finetune.data.collators import Seq2SeqCollator
from asr_finetune.data.text import TextNormalizer
from asr_finetune.models import seq2seq as seq2seq_models
from asr_finetune.tasks import seq2seq
from asr_finetune.tasks.seq2seq import Seq2SeqDataArguments, Seq2SeqModelArguments
from asr_finetune.tools.tiny_models import save_tiny_bart_decoder, save_tiny_whisper, wav2vec2_feature_extractor

from conftest import REPO, sox

SCRIPT = REPO / "scripts" / "run_speech_recognition_seq2seq.py"
create = runpy.run_path(str(REPO / "scripts" / "create_speech_encoder_decoder.py"), run_name="create_script")["main"]


def corpus_texts(corpus: Path) -> list[str]:
    lines = (corpus / "train" / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


def seq2seq_args(model: Path, corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--dataset_name", str(corpus), "--output_dir", str(output_dir),
        "--eval_split_name", "test", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        "--learning_rate", "1e-2", "--logging_steps", "1", "--freeze_feature_encoder", "false",
        "--report_to", "none", "--disable_tqdm", "true", "--predict_with_generate",
        "--generation_max_length", "12", "--generation_num_beams", "1", *extra,
    ]  # fmt: skip


def losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def predictions(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "eval_predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def warm_started(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny wav2vec2 encoder + tiny BART-like decoder, joined by scripts/create_speech_encoder_decoder.py."""
    root = tmp_path_factory.mktemp("warm")
    decoder = save_tiny_bart_decoder(root / "decoder", corpus_texts(corpus), d_model=32, layers=2, heads=2)
    create(["--encoder", str(tiny_model), "--decoder", str(decoder), "--output_dir", str(root / "model")])
    return root / "model"


@pytest.fixture(scope="module")
def tiny_whisper(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whisper") / "model"
    return save_tiny_whisper(path, corpus_texts(corpus), d_model=32, layers=1, heads=2)


@pytest.fixture(scope="module")
def trained(warm_started: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("s2s") / "run"
    main(seq2seq_args(warm_started, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "10"))
    return output_dir


# ---------------------------------------------------------------------------------------------- warm start


def test_create_script_sets_decoder_ids_generation_and_processor(warm_started: Path) -> None:
    config = json.loads((warm_started / "config.json").read_text())
    assert (config["decoder_start_token_id"], config["pad_token_id"], config["eos_token_id"]) == (0, 1, 2)
    assert config["encoder"]["add_adapter"] is True and config["encoder"]["layerdrop"] == 0.0
    assert config["encoder"]["feat_proj_dropout"] == 0.0
    generation = json.loads((warm_started / "generation_config.json").read_text())
    assert generation["max_length"] == 200 and generation["num_beams"] == 5
    assert generation["decoder_start_token_id"] == 0
    processor = AutoProcessor.from_pretrained(str(warm_started))
    assert processor.tokenizer.bos_token_id == 0 and processor.feature_extractor.sampling_rate == 16_000


def test_create_script_refuses_a_tokenizer_bigger_than_the_decoder(
    tiny_model: Path, warm_started: Path, corpus: Path, tmp_path: Path
) -> None:
    small = save_tiny_bart_decoder(tmp_path / "small", corpus_texts(corpus)[:3], vocab_size=270, d_model=16, layers=1)
    big_tokenizer = warm_started.parent / "decoder"
    args = ["--encoder", str(tiny_model), "--decoder", str(small), "--tokenizer_name", str(big_tokenizer)]
    with pytest.raises(ValueError, match="pass the decoder's own tokenizer"):
        create([*args, "--output_dir", str(tmp_path / "x")])


def test_warm_started_training_lowers_the_loss_and_reports_generated_text(trained: Path) -> None:
    history = losses(trained)
    assert len(history) == 10
    assert sum(history[-3:]) / 3 < sum(history[:3]) / 3 * 0.8
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "README.md",
        "eval_results.json",
        "data_report.json",
    ):
        assert (trained / name).is_file(), name
    results = json.loads((trained / "all_results.json").read_text())
    assert {"eval_wer", "eval_cer", "train_loss"} <= set(results)
    rows = predictions(trained)
    assert len(rows) == 8 and rows[0]["id"].endswith("test_000000.wav")
    assert all("<s>" not in row["hypothesis"] and "<pad>" not in row["hypothesis"] for row in rows)


def test_warm_started_output_transcribes_in_the_asr_pipeline(trained: Path, corpus: Path) -> None:
    asr = pipeline("automatic-speech-recognition", model=str(trained))
    clip = sorted((corpus / "test").glob("*.wav"))[0]
    out = asr({"raw": load_audio(str(clip), 16_000), "sampling_rate": 16_000},
              generate_kwargs={"max_length": 12, "num_beams": 1})  # as the script's evaluation generated
    expected = next(row["hypothesis"] for row in predictions(trained) if row["id"].endswith(clip.name))
    assert out["text"].strip().lower() == expected and "<s>" not in out["text"]


def test_eval_only_reproduces_the_training_runs_figures(trained: Path, corpus: Path, tmp_path: Path) -> None:
    results = main(seq2seq_args(trained, corpus, tmp_path / "eval", "--do_eval", "--train_split_name", "absent"))
    expected = json.loads((trained / "eval_results.json").read_text())
    assert results["eval_wer"] == pytest.approx(expected["eval_wer"])
    assert [r["hypothesis"] for r in predictions(tmp_path / "eval")] == [r["hypothesis"] for r in predictions(trained)]


def test_train_only_never_reads_the_eval_split(warm_started: Path, corpus: Path, tmp_path: Path) -> None:
    main(
        seq2seq_args(
            warm_started, corpus, tmp_path / "t", "--do_train", "--max_steps", "2", "--eval_split_name", "absent"
        )
    )
    assert (tmp_path / "t" / "model.safetensors").is_file()
    assert not (tmp_path / "t" / "eval_predictions.jsonl").exists()


def test_gradient_accumulation_logs_the_same_loss_as_a_bigger_batch(
    warm_started: Path, corpus: Path, tmp_path: Path
) -> None:
    """The model averages its loss per batch; the Trainer must still divide by the accumulation steps."""

    def first_loss(name: str, batch: str, accumulate: str) -> float:
        args = ["--do_train", "--max_steps", "1", "--apply_spec_augment", "false",
                "--per_device_train_batch_size", batch, "--gradient_accumulation_steps", accumulate]  # fmt: skip
        main(seq2seq_args(warm_started, corpus, tmp_path / name, *args))
        return losses(tmp_path / name)[0]

    assert first_loss("accumulated", "2", "4") == pytest.approx(first_loss("batch8", "8", "1"), rel=1e-3)


def test_language_flag_on_a_non_whisper_model_is_an_error(warm_started: Path, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--language / --task set Whisper's prefix tokens"):
        main(seq2seq_args(warm_started, corpus, tmp_path / "x", "--do_train", "--language", "german"))


def test_joint_ctc_loss_is_logged_and_the_head_stays_out_of_the_saved_model(
    warm_started: Path, corpus: Path, tmp_path: Path
) -> None:
    import shutil

    from safetensors import safe_open

    def keys(path: Path) -> set[str]:
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            return set(f.keys())

    def head(path: Path) -> np.ndarray:
        with safe_open(str(path / "model.safetensors"), "np") as f:
            return f.get_tensor("ctc_head.proj.weight")

    out = tmp_path / "joint"
    args = seq2seq_args(warm_started, corpus, out, "--do_train", "--max_steps", "8", "--save_steps", "2",
                        "--ctc_weight", "0.4", "--lr_scheduler_type", "constant")  # fmt: skip
    main(args)
    state = json.loads((out / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logged) == 8
    for entry in logged:
        assert entry["loss"] == pytest.approx(0.4 * entry["ctc_loss"] + 0.6 * entry["attention_loss"], rel=2e-3)
    assert logged[-1]["ctc_loss"] < logged[0]["ctc_loss"]
    assert any(key.startswith("ctc_head.") for key in keys(out / "checkpoint-8"))
    assert not any(key.startswith("ctc_head.") for key in keys(out))
    _, info = AutoModelForSpeechSeq2Seq.from_pretrained(str(out), output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]

    # Interrupted after step 6: the rerun resumes with checkpoint-6's head and ends where the first run did.
    uninterrupted = head(out / "checkpoint-8")
    shutil.rmtree(out / "checkpoint-8")
    main(args)
    resumed = head(out / "checkpoint-8")
    assert not np.allclose(head(out / "checkpoint-6"), uninterrupted)
    np.testing.assert_allclose(resumed, uninterrupted, atol=1e-4)


def test_joint_ctc_targets_leave_out_special_tokens_and_padding(warm_started: Path) -> None:
    import torch
    from torch.nn import functional as F

    from asr_finetune.models import joint_ctc

    model = AutoModelForSpeechSeq2Seq.from_pretrained(str(warm_started))
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    head = joint_ctc.attach_ctc_head(model, 0.3, [eos, pad])
    labels = torch.tensor([[5, 6, eos, -100], [7, eos, -100, -100]])
    states = torch.randn(2, 9, head.proj.in_features)
    with torch.no_grad():
        got = joint_ctc.ctc_loss(model, head, states, None, labels)
    expected = F.ctc_loss(
        head(states).transpose(0, 1), torch.tensor([5, 6, 7]), torch.tensor([9, 9]), torch.tensor([2, 1]), blank=pad
    )
    assert got.item() == pytest.approx(expected.item())


def test_joint_ctc_is_refused_where_it_cannot_work(tiny_whisper: Path, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="warm-started encoder-decoder"):
        main(seq2seq_args(tiny_whisper, corpus, tmp_path / "w", "--do_train", "--ctc_weight", "0.3"))
    with pytest.raises(ValueError, match="--ctc_weight 1.0"):
        parse_args((Seq2SeqModelArguments,), ["--model_name_or_path", "x", "--ctc_weight", "1.0"])


# ---------------------------------------------------------------------------------------------- whisper


def test_whisper_end_to_end_with_language_and_task(tiny_whisper: Path, corpus: Path, tmp_path: Path) -> None:
    output_dir = tmp_path / "whisper"
    main(
        seq2seq_args(
            tiny_whisper,
            corpus,
            output_dir,
            "--do_train",
            "--do_eval",
            "--max_steps",
            "6",
            "--language",
            "English",
            "--task",
            "transcribe",
            "--learning_rate",
            "1e-2",
        )
    )
    history = losses(output_dir)
    assert history[-1] < history[0]
    generation = json.loads((output_dir / "generation_config.json").read_text())
    assert generation["language"] == "en" and generation["task"] == "transcribe"
    assert not generation.get("forced_decoder_ids")
    assert len(predictions(output_dir)) == 8
    # Generation starts with the prefix the labels were trained with.
    processor = AutoProcessor.from_pretrained(str(output_dir))
    model = AutoModelForSpeechSeq2Seq.from_pretrained(str(output_dir))
    clip = sorted((corpus / "test").glob("*.wav"))[0]
    features = processor.feature_extractor(load_audio(str(clip), 16_000), sampling_rate=16_000, return_tensors="pt")
    ids = model.generate(features.input_features, max_new_tokens=3, return_dict_in_generate=True).sequences[0].tolist()
    prefix = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    assert processor.tokenizer.convert_ids_to_tokens(ids[:4]) == prefix
    asr = pipeline("automatic-speech-recognition", model=str(output_dir))
    out = asr({"raw": load_audio(str(clip), 16_000), "sampling_rate": 16_000},
              generate_kwargs={"max_length": 12, "num_beams": 1})
    expected = next(row["hypothesis"] for row in predictions(output_dir) if row["id"].endswith(clip.name))
    assert out["text"].strip().lower() == expected and "<|" not in out["text"]
    # Evaluating the fine-tuned model again, without --language, keeps the language it was trained with.
    main(seq2seq_args(output_dir, corpus, tmp_path / "again", "--do_eval"))
    assert [r["hypothesis"] for r in predictions(tmp_path / "again")] == [
        r["hypothesis"] for r in predictions(output_dir)
    ]


def test_english_only_whisper_given_a_language_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    english = save_tiny_whisper(
        tmp_path / "en", corpus_texts(corpus), d_model=16, layers=1, heads=2, multilingual=False
    )
    with pytest.raises(ValueError, match="English-only Whisper checkpoint: it cannot take --language french"):
        main(seq2seq_args(english, corpus, tmp_path / "x", "--do_train", "--language", "french"))


def test_unknown_language_lists_the_valid_ones(tiny_whisper: Path, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a Whisper language.*english/en"):
        main(seq2seq_args(tiny_whisper, corpus, tmp_path / "x", "--do_train", "--language", "klingon"))


def test_overlong_audio_and_labels_are_dropped_and_counted(
    tiny_whisper: Path, corpus: Path, speech_wav: Path, tmp_path: Path
) -> None:
    long_clip = tmp_path / "long.wav"
    sox(speech_wav, long_clip, "pad", "0", "31")
    rows = [{"audio": str(speech_wav), "text": "one two"}] * 3
    rows += [{"audio": str(long_clip), "text": "one"}, {"audio": str(speech_wav), "text": "nine " * 500}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output_dir = tmp_path / "out"
    main(
        seq2seq_args(
            tiny_whisper,
            tmp_path / "train.jsonl",
            output_dir,
            "--do_train",
            "--preprocessing_only",
            "--max_duration_in_seconds",
            "60",
        )
    )
    report = json.loads((output_dir / "data_report.json").read_text())
    assert report["train"]["utterances"] == 3
    assert report["train"]["dropped"] == {
        "longer than the model's 30 s input window": 1,
        "transcripts longer than the decoder's 448 positions": 1,
    }
    assert not (output_dir / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------- units


def test_model_options_freeze_and_spec_augment(tiny_whisper: Path, warm_started: Path) -> None:
    whisper = seq2seq_models.load_seq2seq_model(str(tiny_whisper), None, apply_spec_augment=True)
    assert whisper.config.apply_spec_augment is True
    seq2seq_models.freeze(whisper, feature_encoder=True, encoder=True)
    assert not any(p.requires_grad for p in whisper.get_encoder().parameters())
    assert all(p.requires_grad for p in whisper.get_decoder().parameters())

    whisper_default = seq2seq_models.load_seq2seq_model(str(tiny_whisper), None, apply_spec_augment=None)
    assert whisper_default.config.apply_spec_augment is False
    default = seq2seq_models.load_seq2seq_model(str(warm_started), None, apply_spec_augment=None)
    assert default.config.encoder.apply_spec_augment is True and default.encoder.masked_spec_embed.requires_grad
    pair = seq2seq_models.load_seq2seq_model(str(warm_started), None, apply_spec_augment=False)
    assert pair.config.encoder.apply_spec_augment is False
    assert not pair.encoder.masked_spec_embed.requires_grad  # unused: DDP would wait for its gradient
    seq2seq_models.freeze(pair, feature_encoder=True, encoder=False)
    assert not any(p.requires_grad for p in pair.encoder.feature_extractor.parameters())
    assert all(p.requires_grad for p in pair.encoder.encoder.parameters())
    seq2seq_models.freeze(pair, feature_encoder=False, encoder=True)
    assert not any(p.requires_grad for p in pair.encoder.encoder.parameters())
    assert all(p.requires_grad for p in pair.encoder.adapter.parameters())  # random at start: it must train


def test_collator_strips_the_decoder_start_token_only_when_every_row_has_it() -> None:
    extractor = wav2vec2_feature_extractor()
    items = [
        {"input_values": np.zeros(1600, np.float32), "labels": [0, 7, 8, 2], "seconds": 0.1},
        {"input_values": np.zeros(800, np.float32), "labels": [0, 9, 2], "seconds": 0.05},
    ]
    batch = Seq2SeqCollator(extractor, decoder_start_token_id=0)(items)
    assert batch["labels"].tolist() == [[7, 8, 2], [9, 2, -100]]
    assert batch["input_values"].shape == (2, 1600) and batch["attention_mask"][1].sum() == 800
    items[1]["labels"] = [9, 2]
    assert Seq2SeqCollator(extractor, decoder_start_token_id=0)(items)["labels"][0, 0] == 0
    whisper_like = Seq2SeqCollator(extractor, decoder_start_token_id=0, input_seconds=30.0)(items)
    assert float(whisper_like["padded_seconds"]) == 60.0


def test_metrics_decode_generated_ids_without_special_tokens(warm_started: Path) -> None:
    tokenizer = seq2seq_models.load_tokenizer(str(warm_started))
    one_two = tokenizer("one two").input_ids
    three = tokenizer("three").input_ids
    ids = np.full((2, len(one_two)), -100)
    ids[0], ids[1, : len(three)] = one_two, three
    metrics = seq2seq.Seq2SeqMetrics(tokenizer, ["one two", "four"], ["wer", "cer"], TextNormalizer(case="lower"))
    result = metrics(EvalPrediction(predictions=ids, label_ids=None))
    assert metrics.hypotheses == ["one two", "three"]
    assert result["wer"] == pytest.approx(1 / 3)


def test_every_reference_seq2seq_flag_and_the_seed_commands_parse(caplog: pytest.LogCaptureFixture) -> None:
    types = (Seq2SeqModelArguments, Seq2SeqDataArguments, Seq2SeqTrainingArguments)
    flags = [
        "--model_name_or_path", "m", "--config_name", "c", "--tokenizer_name", "t", "--feature_extractor_name", "f",
        "--use_fast_tokenizer", "false", "--model_revision", "v1", "--freeze_feature_encoder", "false",
        "--freeze_encoder", "--apply_spec_augment", "--dataset_name", "d", "--dataset_config_name", "hi",
        "--train_split_name", "train+validation", "--eval_split_name", "validation", "--audio_column_name", "a",
        "--text_column_name", "sentence", "--max_duration_in_seconds", "30", "--min_duration_in_seconds", "1",
        "--preprocessing_only", "--do_lower_case", "false", "--language", "hindi", "--task", "translate",
        "--predict_with_generate", "--generation_max_length", "225", "--generation_num_beams", "2",
        "--output_dir", "o",
    ]  # fmt: skip
    model, data, training = parse_args(types, flags)
    assert (model.freeze_encoder, model.apply_spec_augment, model.use_fast_tokenizer) == (True, True, False)
    assert (data.language, data.task, data.do_lower_case, data.train_split_name) == (
        "hindi",
        "translate",
        False,
        "train+validation",
    )
    assert training.predict_with_generate and training.generation_max_length == 225
    assert training.generation_num_beams == 2

    defaults = parse_args(types, ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o"])
    assert (defaults[0].freeze_feature_encoder, defaults[0].freeze_encoder, defaults[0].apply_spec_augment) == (
        True,
        False,
        None,  # Whisper: off; a wav2vec2-like encoder keeps its config's setting
    )
    assert (defaults[1].train_split_name, defaults[1].eval_split_name, defaults[1].task) == (
        "train",
        "test",
        "transcribe",
    )
    assert defaults[1].do_lower_case and defaults[1].max_duration_in_seconds == 20

    warm_start_recipe = (
        "--dataset_name librispeech_asr --model_name_or_path ./ --dataset_config_name clean "
        "--train_split_name train.100 --eval_split_name validation --output_dir ./ --preprocessing_num_workers 16 "
        "--length_column_name input_length --overwrite_output_dir --num_train_epochs 5 "
        "--per_device_train_batch_size 8 --per_device_eval_batch_size 8 --gradient_accumulation_steps 8 "
        "--learning_rate 3e-4 --warmup_steps 400 --evaluation_strategy steps --text_column_name text "
        "--save_steps 400 --eval_steps 400 --logging_steps 10 --save_total_limit 1 --freeze_feature_encoder "
        "--gradient_checkpointing --group_by_length --predict_with_generate --generation_max_length 40 "
        "--generation_num_beams 1 --do_train --do_eval --do_lower_case"
    ).split()
    _, data, training = parse_args(types, warm_start_recipe)
    assert training.generation_max_length == 40
    assert getattr(training, "train_sampling_strategy", None) == "group_by_length" or training.group_by_length
    whisper_recipe = (
        "--model_name_or_path openai/whisper-small --dataset_name mozilla-foundation/common_voice_11_0 "
        "--dataset_config_name hi --language hindi --task transcribe --train_split_name train+validation "
        "--eval_split_name test --max_steps 5000 --output_dir ./whisper-small-hi --per_device_train_batch_size 16 "
        "--gradient_accumulation_steps 2 --per_device_eval_batch_size 16 --logging_steps 25 --learning_rate 1e-5 "
        "--warmup_steps 500 --eval_strategy steps --eval_steps 1000 --save_strategy steps --save_steps 1000 "
        "--generation_max_length 225 --preprocessing_num_workers 16 --max_duration_in_seconds 30 "
        "--text_column_name sentence --freeze_feature_encoder False --gradient_checkpointing --overwrite_output_dir "
        "--do_train --do_eval --predict_with_generate --use_auth_token"
    ).split()
    with caplog.at_level(logging.WARNING):
        _, data, training = parse_args(types, whisper_recipe)
    assert data.language == "hindi" and training.generation_max_length == 225
    assert "--use_auth_token is not needed" in caplog.text


def test_whisper_language_names_and_codes() -> None:
    assert seq2seq_models.whisper_language_code("Hindi") == "hi"
    assert seq2seq_models.whisper_language_code("hi") == "hi"
    assert seq2seq_models.whisper_language_code("<|de|>") == "de"
    with pytest.raises(ValueError, match="not a Whisper language"):
        seq2seq_models.whisper_language_code("xx")


@pytest.mark.parametrize("joint", [[], ["--ctc_weight", "0.3"]], ids=["plain", "joint-ctc"])
def test_torchrun_two_processes(warm_started: Path, corpus: Path, tmp_path: Path, joint: list[str]) -> None:
    """Both ranks in one world; every eval utterance generated and scored once; rank 0 writes the output.

    With joint CTC the head trains inside the model's forward, which DDP requires."""
    import sys

    from conftest import REPO, run_on_free_port

    out = tmp_path / "torchrun"
    args = seq2seq_args(
        warm_started, corpus, out, "--do_train", "--do_eval", "--max_steps", "2", "--train_split_name", "train", *joint
    )
    proc = run_on_free_port(
        lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
                      str(REPO / "scripts" / "run_speech_recognition_seq2seq.py"), *args],
        timeout=600,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("World: 2 process(es)") == 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["epoch"] == pytest.approx(0.5)  # 2 steps x 4 x 2 processes of 32 training clips
    rows = predictions(out)
    assert len(rows) == 8 and len({row["id"] for row in rows}) == 8
    if joint:
        assert all("ctc_loss" in entry for entry in state["log_history"] if "loss" in entry)


def test_a_decoder_with_more_layers_than_its_configs_encoder_generates(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """BART-type configs size the generation cache from encoder_layers: 3 decoder layers over a 1-layer "encoder"
    crashed inside generate (IndexError). The saved config is made consistent; an inconsistent one is fixed on load."""
    decoder = save_tiny_bart_decoder(
        tmp_path / "decoder", corpus_texts(corpus), d_model=32, layers=3, heads=2, encoder_layers=1
    )
    create(["--encoder", str(tiny_model), "--decoder", str(decoder), "--output_dir", str(tmp_path / "model")])
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["decoder"]["decoder_layers"] == config["decoder"]["encoder_layers"] == 3

    config["decoder"]["encoder_layers"] = 1  # as saved by other tools
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    model = seq2seq_models.load_seq2seq_model(str(tmp_path / "model"), None, apply_spec_augment=False)
    features = wav2vec2_feature_extractor()(np.zeros(16_000, np.float32), sampling_rate=16_000, return_tensors="pt")
    assert model.generate(features.input_values, max_new_tokens=4, num_beams=1).shape[1] >= 2


def test_seed_multi_gpu_command_with_gradient_checkpointing_and_an_uneven_eval_set(
    warm_started: Path, corpus: Path, tmp_path: Path
) -> None:
    """The seed README's `python -m torch.distributed.launch ... --gradient_checkpointing` on 2 processes: the
    encoder's SpecAugment embedding trains (DDP without unused-parameter detection needs every parameter to get a
    gradient), and 7 eval clips over 2 processes x batch 4 are each scored once."""
    import sys

    from conftest import run_on_free_port

    out = tmp_path / "launch"
    args = seq2seq_args(warm_started, corpus, out, "--do_train", "--do_eval", "--max_steps", "3",
                        "--gradient_checkpointing", "--max_eval_samples", "7")  # fmt: skip
    proc = run_on_free_port(
        lambda port: [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node", "2", "--master_port",
                      port, str(SCRIPT), *args],
        timeout=600,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("World: 2 process(es)") == 2
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["encoder"]["apply_spec_augment"] is True  # the reference keeps the encoder's SpecAugment
    rows = predictions(out)
    assert len(rows) == 7 and len({row["id"] for row in rows}) == 7
    expected = sorted((corpus / "test").glob("*.wav"))[:7]
    assert [Path(row["id"]).name for row in rows] == [path.name for path in expected]
