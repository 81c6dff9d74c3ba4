"""Long recordings: strided CTC chunks and Whisper's sequential long-form decoding, in evaluation and transcribe.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2ForCTC

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.cli.seq2seq import main as seq2seq_main
from asr_finetune.data.audio import load_audio
from asr_finetune.evaluation import longform
from asr_finetune.evaluation.metrics import error_rates, make_eval_normalizer
from asr_finetune.tools.tiny_models import tiny_wav2vec2_config, wav2vec2_feature_extractor

from conftest import REPO, require, sox

STORY = (
    "The old lighthouse keeper climbed the stairs every evening to light the lamp. Ships passing the rocky coast "
    "could see the beam from many miles away. One winter night a storm broke the windows and the wind blew out the "
    "flame. He carried a lantern up the tower and held it in the window until morning. A fishing boat that had lost "
    "its way followed the small light into the bay. The fishermen thanked him and brought him bread, cheese and a "
    "warm coat. Years later the town built a new tower with an electric lamp. The keeper moved to a cottage by the "
    "sea and planted a garden. Children from the village visited him to hear stories about the storms. He told them "
    "that a single light can guide many people home."
)


@pytest.fixture(scope="module")
def story_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 40 s of espeak-ng reading STORY: longer than Whisper's 30 s window."""
    path = tmp_path_factory.mktemp("story") / "story.wav"
    subprocess.run([require("espeak-ng"), "-s", "165", "-w", str(path), STORY], check=True)
    return path


def test_ctc_chunks_reproduce_the_whole_clip_pass_of_a_local_model() -> None:
    """With no transformer layer a wav2vec2's output frame depends on a few hundred ms of audio only, so the kept
    frames of overlapping chunks must equal the frames of one pass over the whole clip: the stitching is exact."""
    torch.manual_seed(0)
    config = tiny_wav2vec2_config(hidden_size=32, layers=0, conv_channels=32)
    model = Wav2Vec2ForCTC(config).eval()
    samples = torch.randn(16_000 * 13 + 123)
    with torch.no_grad():
        whole = model(samples[None]).logits[0]
        chunked = longform.ctc_chunked_logits(model, samples, 16_000, chunk_length_s=4.0, stride_length_s=1.0)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="leaves nothing"):
        longform.ctc_chunked_logits(model, samples, 16_000, chunk_length_s=2.0, stride_length_s=1.0)


def test_ctc_evaluation_keeps_and_chunks_long_recordings(
    tiny_model: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    clips = sorted((corpus / "test").glob("*.wav"))[:3]
    texts = {json.loads(line)["file_name"]: json.loads(line)["text"]
             for line in (corpus / "test" / "metadata.jsonl").read_text().splitlines()}  # fmt: skip
    long_clip = tmp_path / "long.wav"
    sox(*(clips * 6), long_clip)  # ~25 s, over the 20 s --max_duration_in_seconds and the 8 s chunks below
    rows = [{"audio": str(long_clip), "text": " ".join([texts[c.name] for c in clips] * 6)}]
    rows += [{"audio": str(c), "text": texts[c.name]} for c in clips]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "train.jsonl").write_text((tmp_path / "test.jsonl").read_text())
    monkeypatch.setattr(longform, "CTC_CHUNK_SECONDS", 8.0)
    monkeypatch.setattr(longform, "CTC_STRIDE_SECONDS", 1.0)
    out = tmp_path / "out"
    results = ctc_main([
        "--model_name_or_path", str(tiny_model), "--dataset_name", str(tmp_path), "--output_dir", str(out),
        "--do_train", "--do_eval", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "4", "--train_split_name", "train", "--eval_split_name", "test",
        "--report_to", "none", "--disable_tqdm", "true", "--max_train_samples", "3",
    ])  # fmt: skip
    report = json.loads((out / "data_report.json").read_text())
    assert report["eval"]["utterances"] == 4 and not report["eval"]["dropped"]
    assert report["train"]["dropped"] == {"longer than --max_duration_in_seconds 20.0": 1}
    assert np.isfinite(results["eval_loss"])
    predictions = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    assert [Path(row["id"]).name for row in predictions] == ["long.wav"] + [c.name for c in clips]


def test_whisper_evaluation_decodes_recordings_longer_than_30_s(
    real_whisper: Path, story_wav: Path, words_corpus: Path, tmp_path: Path
) -> None:

    short = sorted((words_corpus / "test").glob("*.wav"))[:2]
    texts = {json.loads(line)["file_name"]: json.loads(line)["text"]
             for line in (words_corpus / "test" / "metadata.jsonl").read_text().splitlines()}  # fmt: skip
    rows = [{"audio": str(short[0]), "text": texts[short[0].name]}, {"audio": str(story_wav), "text": STORY}]
    rows += [{"audio": str(short[1]), "text": texts[short[1].name]}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    results = seq2seq_main([
        "--model_name_or_path", str(real_whisper), "--dataset_name", str(tmp_path / "test.jsonl"),
        "--eval_split_name", "test", "--output_dir", str(out), "--do_eval", "--per_device_eval_batch_size", "4",
        "--predict_with_generate", "--generation_max_length", "40", "--report_to", "none",
    ])  # fmt: skip
    report = json.loads((out / "data_report.json").read_text())
    assert report["eval"]["utterances"] == 3 and not report["eval"]["dropped"]
    predictions = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    story = predictions[1]
    assert story["id"].endswith("story.wav")
    # The whole story, not its first 30 s (nor 40 tokens): the last sentence is there, and few words are wrong.
    assert "guide many people home" in story["normalized_hypothesis"]
    assert story["normalized_errors"] / len(story["normalized_reference"].split()) < 0.25
    assert np.isfinite(results["eval_loss"])  # from the two short clips



def test_transcribe_chunks_a_long_file_for_a_ctc_model(tiny_model: Path, story_wav: Path, tmp_path: Path) -> None:
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor

    from asr_finetune.data.vocab import build_vocab, save_vocab

    save_vocab(build_vocab([STORY.lower()], "|", "[UNK]", "[PAD]"), tmp_path / "vocab.json")
    tokenizer = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), unk_token="[UNK]", pad_token="[PAD]")
    model = Wav2Vec2ForCTC.from_pretrained(
        str(tiny_model), vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id
    )
    processor = Wav2Vec2Processor(feature_extractor=wav2vec2_feature_extractor(), tokenizer=tokenizer)
    samples = load_audio(str(story_wav), 16_000)
    assert len(samples) > longform.CTC_CHUNK_SECONDS * 16_000
    model.eval()
    with torch.no_grad():
        whole = model(torch.as_tensor(samples)[None]).logits[0]
        chunked = longform.ctc_chunked_logits(model, torch.as_tensor(samples), 16_000)
    assert chunked.shape == whole.shape
    # Away from the chunk borders the frames agree with one pass over the whole clip (a random 2-layer model
    # attends to everything, so only approximately).
    assert (chunked.argmax(-1) == whole.argmax(-1)).float().mean() > 0.7
    # transcribe() is the chunked greedy decode of the normalised input, as one string
    inputs = processor.feature_extractor(samples, sampling_rate=16_000, return_tensors="pt").input_values[0]
    with torch.no_grad():
        expected = processor.tokenizer.decode(longform.ctc_chunked_logits(model, inputs, 16_000).argmax(-1))
    assert longform.transcribe(model, processor, samples) == expected.strip()


@pytest.mark.slow
def test_a_ten_minute_recording_is_transcribed(real_whisper: Path, story_wav: Path, tmp_path: Path) -> None:
    ten = tmp_path / "ten.wav"
    sox(*([story_wav] * 15), ten)  # ~10 min
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "transcribe.py"), "--model", str(real_whisper), str(ten)],
        capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    text = make_eval_normalizer("english")(proc.stdout.strip().split("\t", 1)[1])
    reference = make_eval_normalizer("english")(" ".join([STORY] * 15))
    assert text.count("guide many people home") >= 12
    assert error_rates([reference], [text])["wer"] < 0.3
