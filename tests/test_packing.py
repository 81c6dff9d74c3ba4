"""--pack_utterances: short utterances packed into Whisper's 30 s window (audio joined, transcripts joined)."""

import json
import random
from pathlib import Path

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer, WhisperFeatureExtractor

from asr_finetune.cli.seq2seq import main
from asr_finetune.data.audio import load_audio
from asr_finetune.data.features import extract_features
from asr_finetune.data.packing import GAP_SECONDS, PackedSpeechDataset, pack_utterances, plan_packs
from asr_finetune.errors import UsageError
from asr_finetune.tools.tiny_models import save_tiny_whisper


def labelled_rows(corpus: Path, tokenizer) -> datasets.Dataset:
    rows = [json.loads(line) for line in (corpus / "train" / "metadata.jsonl").read_text().splitlines()]
    audio = [str(corpus / "train" / row["file_name"]) for row in rows]
    texts = [row["text"] for row in rows]
    return datasets.Dataset.from_dict({
        "audio": audio, "text": texts, "id": [Path(a).stem for a in audio],
        "duration": [len(load_audio(a, 16_000)) / 16_000 for a in audio], "labels": tokenizer(texts).input_ids,
    })  # fmt: skip


def test_packs_hold_every_utterance_once_and_fill_the_window() -> None:
    rng = random.Random(0)
    durations = [rng.uniform(0.5, 6.0) for _ in range(500)]
    lengths = [rng.randint(3, 20) for _ in range(500)]
    packs = plan_packs(durations, lengths, window=30.0, label_budget=120, seed=1)
    assert sorted(i for pack in packs for i in pack) == list(range(500))
    for pack in packs:
        assert sum(durations[i] for i in pack) + GAP_SECONDS * (len(pack) - 1) <= 30.0
        assert sum(lengths[i] for i in pack) <= 120
    fill = sum(durations) / (30.0 * len(packs))
    assert fill > 0.85, f"packs only {fill:.0%} full"
    assert packs == plan_packs(durations, lengths, window=30.0, label_budget=120, seed=1)  # a resume packs alike
    assert packs != plan_packs(durations, lengths, window=30.0, label_budget=120, seed=2)


def test_a_pack_is_its_utterances_audio_and_transcripts_joined(real_whisper: Path, words_corpus: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(real_whisper))
    extractor = WhisperFeatureExtractor.from_pretrained(str(real_whisper))
    rows = labelled_rows(words_corpus, tokenizer)
    packs = pack_utterances(rows, tokenizer, window=30.0, label_limit=448, start_token=50257, seed=0)
    assert len(packs) < len(rows) / 4  # 24 clips of ~2-4 s: a few windows
    dataset = PackedSpeechDataset(packs, extractor, "audio")
    members = packs.members[0]
    item = dataset[0]
    texts = [rows[i]["text"] for i in members]
    assert tokenizer.decode(item["labels"], skip_special_tokens=True).strip() == " ".join(texts)
    assert tokenizer.convert_ids_to_tokens(item["labels"][:2]) == ["<|startoftranscript|>", "<|notimestamps|>"]
    assert item["id"] == "+".join(rows[i]["id"] for i in members)
    assert item["seconds"] == pytest.approx(sum(rows[i]["duration"] for i in members), abs=1e-3)
    gap = np.zeros(int(GAP_SECONDS * 16_000), dtype=np.float32)
    audio = [load_audio(rows[i]["audio"], 16_000) for i in members]
    joined = np.concatenate([piece for a in audio for piece in (gap, a)][1:])
    np.testing.assert_allclose(item["input_features"], extract_features(extractor, joined, 16_000)["input_features"][0],
                               atol=1e-5)
    assert dataset.durations[0] == pytest.approx(len(joined) / 16_000, abs=1e-3)


def test_packing_cuts_whisper_padding_and_is_refused_where_it_cannot_help(
    words_corpus: Path, tmp_path: Path
) -> None:
    texts = [json.loads(line)["text"] for line in (words_corpus / "train" / "metadata.jsonl").read_text().splitlines()]
    model = save_tiny_whisper(tmp_path / "whisper", texts, d_model=32, layers=1, heads=2)
    common = [
        "--model_name_or_path", str(model), "--dataset_name", str(words_corpus), "--eval_split_name", "test",
        "--do_train", "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
        "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
    ]  # fmt: skip
    plain = main([*common, "--output_dir", str(tmp_path / "plain")])
    packed = main([*common, "--output_dir", str(tmp_path / "packed"), "--pack_utterances"])
    assert plain["train_padding_fraction"] > 0.85  # 2-4 s clips padded to 30 s
    assert packed["train_padding_fraction"] < 0.5
    state = json.loads((tmp_path / "packed" / "trainer_state.json").read_text())
    assert state["global_step"] < json.loads((tmp_path / "plain" / "trainer_state.json").read_text())["global_step"]

    with pytest.raises(UsageError, match="--pack_utterances fills Whisper's fixed 30 s input window"):
        pack_utterances(datasets.Dataset.from_dict({"text": ["a"], "labels": [[1]], "duration": [1.0]}), None,
                        window=None, label_limit=None, start_token=None, seed=0)


def test_a_broken_clip_in_a_pack_is_named_or_skipped(real_whisper: Path, words_corpus: Path, tmp_path: Path) -> None:
    import shutil

    from asr_finetune.data.collators import BAD_ROW_KEY
    from asr_finetune.errors import DataError

    tokenizer = AutoTokenizer.from_pretrained(str(real_whisper))
    extractor = WhisperFeatureExtractor.from_pretrained(str(real_whisper))
    corpus = tmp_path / "corpus"
    shutil.copytree(words_corpus, corpus)
    rows = labelled_rows(corpus, tokenizer).select(range(4))
    packs = pack_utterances(rows, tokenizer, window=30.0, label_limit=448, start_token=50257, seed=0)
    broken = packs.members[0][-1]
    Path(rows[broken]["audio"]).write_bytes(b"not audio at all")  # changed after the start-up check
    with pytest.raises(DataError, match=rf"Row {broken} \({rows[broken]['id']}\).*--on_bad_row skip"):
        PackedSpeechDataset(packs, extractor, "audio")[0]
    assert PackedSpeechDataset(packs, extractor, "audio", on_bad_row="skip")[0] == {BAD_ROW_KEY: rows[broken]["id"]}
