"""Using an output dir: asr-transcribe on files, folders and manifests (txt/JSON/SRT), and transformers' pipeline
called with a file path, both checked against the project's own transcription of the same clip."""

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2ForCTC, pipeline

from asr_finetune.cli import transcribe as transcribe_command
from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.data.audio import load_audio
from asr_finetune.errors import UsageError
from asr_finetune.evaluation import longform, transcription
from asr_finetune.evaluation.long_audio import LongFile, whisper_log_mel
from asr_finetune.evaluation.metrics import error_rates, make_eval_normalizer
from asr_finetune.models.loading import dtype_kwargs

from conftest import REPO, require, sox

CTC_SCRIPT = REPO / "scripts" / "run_speech_recognition_ctc.py"
SENTENCES = {
    "weather": "The weather today is sunny and warm, with a light breeze from the west.",
    "meeting": "Please call me tomorrow morning after the meeting with the new team.",
}
SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n(.+)\n")


@pytest.fixture(scope="module")
def ctc_model(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output dir of a short CTC fine-tuning run (the CTC script as users run it), and in ``eval/`` the
    script's evaluation of it on the test split."""
    output_dir = tmp_path_factory.mktemp("ctc") / "run"
    common = ["--dataset_name", str(corpus), "--train_split_name", "train", "--eval_split_name", "test",
              "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    ctc_main([*common, "--model_name_or_path", str(tiny_model), "--output_dir", str(output_dir), "--do_train",
          "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--freeze_feature_encoder", "false",
          "--max_steps", "12", "--save_strategy", "no"])  # fmt: skip
    # Twelve steps leave a model that emits only blanks, and "" == "" would prove nothing: lower the blank's bias
    # so it emits letters that depend on every detail of the input (any difference in decoding shows).
    model = Wav2Vec2ForCTC.from_pretrained(output_dir)
    with torch.no_grad():
        model.lm_head.bias[model.config.pad_token_id] -= 4.0
    model.save_pretrained(output_dir)
    ctc_main([*common, "--model_name_or_path", str(output_dir), "--output_dir", str(output_dir / "eval"), "--do_eval",
          "--per_device_eval_batch_size", "4"])  # fmt: skip
    return output_dir


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real files: an espeak-ng sentence at 22.05 kHz, another resampled to 16 kHz FLAC by sox, and a WAV that is
    not audio."""
    root = tmp_path_factory.mktemp("spoken")
    weather, meeting = root / "weather.wav", root / "meeting22k.wav"
    for path, key in ((weather, "weather"), (meeting, "meeting")):
        subprocess.run([require("espeak-ng"), "-s", "160", "-w", str(path), SENTENCES[key]], check=True)
    sox(meeting, "-r", "16000", root / "meeting.flac")
    meeting.unlink()
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio")
    return {"weather": weather, "meeting": root / "meeting.flac", "broken": root / "broken.wav"}


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = transcribe_command.run(["--no_progress", *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) per cue; fails unless the whole file is well-formed numbered SRT."""
    cues, position = [], 0
    for number, match in enumerate(SRT_CUE.finditer(text), start=1):
        assert match.start() == position, f"junk before cue {number}: {text[position : match.start()]!r}"
        assert int(match[1]) == number
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in match.groups()[1:9])
        cues.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, match[10]))
        position = match.end() + 1 if text[match.end() : match.end() + 1] == "\n" else match.end()
    assert position >= len(text.rstrip("\n")), f"junk at the end: {text[position:]!r}"
    return cues


def test_whisper_srt_and_json_on_three_files_one_bad(real_whisper: Path, spoken: dict[str, Path], tmp_path: Path):
    out_dir = tmp_path / "out"
    files = [str(spoken[name]) for name in ("weather", "meeting", "broken")]
    code, _, err = run_cli("--model", str(real_whisper), "--output_format", "srt", "--output_dir", str(out_dir), *files)
    assert code == 1  # the bad file is counted
    assert f"{spoken['broken']}\tERROR:" in err and "Skipped." in err
    assert "Transcribed 2 of 3 file(s)" in err and "real-time factor" in err and "1 file(s) failed" in err
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(".")) == ["meeting.srt", "weather.srt"]
    english = make_eval_normalizer("english")
    for name in ("weather", "meeting"):
        cues = parse_srt((out_dir / f"{name}.srt").read_text())
        duration = len(load_audio(str(spoken[name]), 16_000)) / 16_000
        assert cues and cues[0][0] < 1.0 and all(start < end <= duration + 0.05 for start, end, _ in cues)
        text = english(" ".join(cue[2] for cue in cues))
        assert error_rates([english(SENTENCES[name])], [text])["wer"] <= 0.4, text
    # JSON: the same text as the project's transcription with timestamps, segments and the real-time factor.
    code, _, _ = run_cli("--model", str(real_whisper), "--output_format", "json", "--output_dir", str(out_dir),
                         files[0])  # fmt: skip
    record = json.loads((out_dir / "weather.json").read_text())
    assert code == 0 and record["text"] == " ".join(s["text"] for s in record["segments"])
    assert record["real_time_factor"] == pytest.approx(record["seconds"] / record["duration"], rel=1e-2)
    assert record["duration"] == pytest.approx(len(load_audio(files[0], 16_000)) / 16_000, abs=1e-3)


def test_folders_and_manifests_become_one_output_each(tmp_path: Path, spoken: dict[str, Path]) -> None:
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(spoken["weather"], folder / "a.wav")
    shutil.copy(spoken["meeting"], folder / "sub" / "b.flac")
    (folder / "notes.txt").write_text("not audio")
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"audio": "clips/a.wav", "text": "x"}) + "\n"
                        + json.dumps({"audio": str(spoken["meeting"]), "text": "y"}) + "\n")  # fmt: skip
    found = transcription.find_inputs([str(folder)])
    assert [(i.path.name, str(i.name)) for i in found] == [("a.wav", "a.wav"), ("b.flac", "sub/b.flac")]
    found = transcription.find_inputs([str(manifest)])
    assert [i.path for i in found] == [(folder / "a.wav").resolve(), spoken["meeting"]]
    assert [str(i.name) for i in found] == ["clips/a.wav", "meeting.flac"]
    with pytest.raises(UsageError, match="would both write"):
        transcription.find_inputs([str(folder / "a.wav"), str(tmp_path / "elsewhere" / "a.flac")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no audio files"):
        transcription.find_inputs([str(tmp_path / "empty")])


def test_ctc_json_words_match_the_text_and_the_evaluation(ctc_model: Path, corpus: Path, tmp_path: Path) -> None:
    clips = sorted((corpus / "test").glob("*.wav"))[:3]
    code, out, err = run_cli("--model", str(ctc_model), "--output_format", "json", *map(str, clips))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    predictions = (ctc_model / "eval" / "eval_predictions.jsonl").read_text().splitlines()
    evaluated = {Path(row["id"]).name: row["hypothesis"] for row in map(json.loads, predictions)}
    assert any(record["text"] for record in records), "the model emits nothing: train the fixture longer"
    for clip, record in zip(clips, records, strict=True):
        assert record["file"] == str(clip)
        assert record["text"] == evaluated[clip.name]  # the same decoding as the evaluation
        assert " ".join(w["text"] for w in record["words"]) == record["text"]
        assert all(0 <= w["start"] < w["end"] <= record["duration"] + 0.02 for w in record["words"])
    # txt on stdout: path<TAB>text, as transcribe.py always printed
    code, out, _ = run_cli("--model", str(ctc_model), str(clips[0]))
    assert out == f"{clips[0]}\t{records[0]['text']}\n"


class FrameModel(torch.nn.Module):
    """A CTC 'model' that emits given argmax ids, one frame per 320 samples (like wav2vec2)."""

    def __init__(self, ids: list[int], vocab: int) -> None:
        super().__init__()
        self.ids = torch.tensor(ids)
        self.vocab = vocab
        self.config = SimpleNamespace(inputs_to_logits_ratio=320)

    def _get_feat_extract_output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return samples // 320

    def forward(self, values: torch.Tensor) -> SimpleNamespace:
        frames = values.shape[-1] // 320
        return SimpleNamespace(logits=torch.nn.functional.one_hot(self.ids[:frames], self.vocab).float()[None])


def test_ctc_word_times_come_from_the_argmax_frames(tmp_path: Path) -> None:
    from transformers import Wav2Vec2CTCTokenizer

    vocab = {"[PAD]": 0, "|": 1, "o": 2, "n": 3, "e": 4, "t": 5, "w": 6, "[UNK]": 7}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), unk_token="[UNK]", pad_token="[PAD]")
    # 50 frames = 1 s at 16 kHz: "one" on frames 10-15, a word boundary, "two" on frames 30-34.
    ids = [0] * 10 + [2, 2, 3, 0, 4, 4] + [1] * 4 + [0] * 10 + [5, 6, 6, 2, 2] + [0] * 15
    transcript = longform.ctc_words(FrameModel(ids, len(vocab)), tokenizer, torch.zeros(50 * 320), 16_000)
    assert transcript.text == "one two"
    assert [(w.text, w.start, w.end) for w in transcript.words] == [("one", 0.2, 0.32), ("two", 0.6, 0.7)]
    srt = transcription.to_srt(transcript)
    assert parse_srt(srt) == [(0.2, 0.7, "one two")]


def test_cues_split_ctc_words_at_pauses() -> None:
    words = [longform.Timed(s, s + 0.25, f"w{i}") for i, s in enumerate([0.0, 0.5, 1.0, 2.5, 3.0])]
    cues = transcription.cues(longform.Transcript("w0 w1 w2 w3 w4", [], words))
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 1.25, "w0 w1 w2"), (2.5, 3.25, "w3 w4")]
    assert transcription.srt_time(3723.4567) == "01:02:03,457"


# ---------------------------------------------------------------------------------------------- pipeline


def test_pipeline_reads_a_file_path_like_our_transcription(ctc_model: Path, corpus: Path, tmp_path: Path) -> None:
    """The task guide's last step, on an output dir of the CTC script: a 22.05 kHz espeak file (ffmpeg resamples
    it) and a 16 kHz copy made by sox give the text our own code gives for the clip."""
    require("ffmpeg")
    asr = pipeline("automatic-speech-recognition", model=str(ctc_model))
    transcriber = transcription.Transcriber(str(ctc_model))
    clip = sorted((corpus / "test").glob("*.wav"))[0]
    sox(clip, "-r", "16000", tmp_path / "clip16k.wav")
    ours = transcriber(load_audio(str(clip), 16_000), timed=False).text
    assert ours, "the model emits nothing: train the fixture longer"
    assert asr(str(clip))["text"].strip() == ours
    assert (
        asr(str(tmp_path / "clip16k.wav"))["text"].strip()
        == transcriber(load_audio(str(tmp_path / "clip16k.wav"), 16_000), timed=False).text
    )


def test_pipeline_reads_a_file_path_with_real_whisper(real_whisper: Path, spoken: dict[str, Path]) -> None:
    """Real text: a 16 kHz FLAC gives exactly our text; a 22.05 kHz WAV, which ffmpeg resamples (our code uses
    soxr), the same words (a real model may put a comma elsewhere on the slightly different samples)."""
    require("ffmpeg")
    # float32 as a fine-tuning run saves it (the bundled checkpoint is fp16 as shipped, slow on a CPU)
    asr = pipeline("automatic-speech-recognition", model=str(real_whisper), **dtype_kwargs(torch.float32))
    transcriber = transcription.Transcriber(str(real_whisper))
    ours = {name: transcriber(load_audio(str(spoken[name]), 16_000), timed=False).text for name in SENTENCES}
    assert asr(str(spoken["meeting"]))["text"].strip() == ours["meeting"]
    english = make_eval_normalizer("english")
    assert english(asr(str(spoken["weather"]))["text"]) == english(ours["weather"])
    assert "sunny and warm" in ours["weather"]


def test_pipeline_needs_torchaudio_only_for_arrays_at_another_rate(ctc_model: Path, spoken: dict[str, Path]) -> None:
    """What the README says: arrays at the model's rate work; an array at another rate needs torchaudio, which
    has no build for torch 2.13 (pass load_audio's 16 kHz samples, or the file path)."""
    asr = pipeline("automatic-speech-recognition", model=str(ctc_model))
    samples = load_audio(str(spoken["weather"]), 16_000)
    ours = transcription.Transcriber(str(ctc_model))(samples, timed=False).text
    assert asr({"raw": samples, "sampling_rate": 16_000})["text"].strip() == ours
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        import soundfile

        samples, rate = soundfile.read(spoken["weather"], dtype="float32")
        with pytest.raises(ImportError, match="torchaudio"):
            asr({"raw": samples, "sampling_rate": rate})


# ---------------------------------------------------------------------------------------------- long files (case 16)


def peak_rss_mb(*command: str) -> float:
    """Peak RSS of ``command`` alone, in MB: measured by a fresh wrapper process whose only child it is."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024


def test_case16_long_files_are_read_in_blocks_with_the_same_transcript(
    ctc_model: Path, real_whisper: Path, spoken: dict[str, Path], tmp_path: Path
) -> None:
    """A file longer than the block threshold is read, resampled and decoded in blocks: the text and the word or
    segment times are those of decoding it whole (CTC: a 22.05 kHz file, resampled as it is read; the real
    Whisper: long-form decoding over features computed block by block)."""
    long22k = tmp_path / "long22k.wav"
    sox(spoken["weather"], long22k, "repeat", "15")  # about 70 s at 22.05 kHz
    ctc = transcription.Transcriber(str(ctc_model))
    streamed, whole = ctc.read(str(long22k), long_file_seconds=60), ctc.read(str(long22k), long_file_seconds=1e9)
    assert isinstance(streamed, LongFile) and not isinstance(whole, LongFile)
    ours, reference = ctc(streamed, timed=True), ctc(whole, timed=True)
    assert reference.text and ours.text == reference.text and ours.words == reference.words
    assert len(streamed) == len(whole)

    whisper = transcription.Transcriber(str(real_whisper))
    long16k = tmp_path / "long16k.flac"
    sox(spoken["meeting"], long16k, "repeat", "16")  # about 70 s: three windows of long-form decoding
    ours = whisper(whisper.read(str(long16k), long_file_seconds=60), timed=True)
    reference = whisper(whisper.read(str(long16k), long_file_seconds=1e9), timed=True)
    assert "tomorrow morning" in reference.text
    assert ours.text == reference.text and ours.segments == reference.segments


def test_case16_whisper_features_block_by_block_equal_the_extractor(spoken: dict[str, Path]) -> None:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor()
    samples = np.tile(load_audio(str(spoken["meeting"]), 16_000), 12)[:-77]  # not a whole number of frames
    reference = extractor(samples, sampling_rate=16_000, truncation=False, padding="longest")["input_features"]
    block = 16_000 * 7 + 13  # blocks that end mid-frame
    ours, count = whisper_log_mel(extractor, (samples[i : i + block] for i in range(0, len(samples), block)),
                                  len(samples) + 16_000)  # fmt: skip
    assert count == len(samples) and ours.shape == np.asarray(reference).shape
    assert np.array_equal(ours.numpy(), np.asarray(reference))


def test_case16_transcribe_memory_is_flat_in_file_length(ctc_model: Path, spoken: dict[str, Path],
                                                         tmp_path: Path) -> None:  # fmt: skip
    """Decoded whole, a 16 kHz file costs about 1.1 GB per hour of audio; read in blocks, 24 minutes cost what 6
    do (within the model's own noise)."""
    clip = tmp_path / "clip16k.wav"
    sox(spoken["weather"], "-r", "16000", clip)
    peaks = {}
    for minutes in (6, 24):
        path = tmp_path / f"{minutes}min.wav"
        sox(clip, path, "repeat", str(int(minutes * 60 / 4.2)))
        peaks[minutes] = peak_rss_mb(sys.executable, "-m", "asr_finetune.cli.transcribe", "--model",
                                     str(ctc_model), "--no_progress", "--output_dir", str(tmp_path / "out"),
                                     str(path))  # fmt: skip
    # Whole, the 18 extra minutes would cost about 330 MB.
    assert peaks[24] - peaks[6] < 60, peaks
