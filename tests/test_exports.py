"""Exports for serving (issue 26): the real Whisper tiny.en through CTranslate2 and a CTC model through ONNX give
the transformers engine's transcripts in asr-transcribe."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_faults import ctc_args
from transformers import Wav2Vec2ForCTC

from asr_finetune.cli import transcribe as transcribe_command
from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.cli.export import main as export_main
from asr_finetune.errors import UsageError
from asr_finetune.evaluation.transcription import make_transcriber

from conftest import require

SENTENCES = ("The weather will be cold and windy tomorrow morning.", "Please send the report to the whole team.",
             "Seven people joined the meeting late on Friday.")  # fmt: skip


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("sentences")
    paths = [root / f"s{index}.wav" for index in range(len(SENTENCES))]
    for path, text in zip(paths, SENTENCES, strict=True):
        subprocess.run([require("espeak-ng"), "-s", "150", "-w", str(path), text], check=True)
    return paths


@pytest.fixture(scope="module")
def ctc_model(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short CTC run with a random head and an unlikely blank, so it writes letters that depend on every detail of
    the input (two engines that differ anywhere differ in the text)."""
    output_dir = tmp_path_factory.mktemp("ctc") / "run"
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "2", "--learning_rate", "1e-5",
                      "--save_strategy", "no"))  # fmt: skip
    model = Wav2Vec2ForCTC.from_pretrained(output_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 2.0)
        model.lm_head.bias[model.config.pad_token_id] -= 4.0
    model.save_pretrained(output_dir)
    return output_dir


def transcripts(model: Path, clips: list[Path], *flags: str) -> list[str]:
    out, err = io.StringIO(), io.StringIO()
    code = transcribe_command.run(["--no_progress", "--model", str(model), *flags, *map(str, clips)], out=out, err=err)
    assert code == 0, err.getvalue()
    return [line.split("\t", 1)[1] for line in out.getvalue().splitlines()]


def test_whisper_through_ctranslate2_transcribes_as_transformers(
    real_whisper: Path, sentences: list[Path], tmp_path: Path
) -> None:
    export = export_main(["--model", str(real_whisper), "--to", "ctranslate2", "--output_dir", str(tmp_path / "ct2")])
    assert (export / "model.bin").is_file() and (export / "tokenizer.json").is_file()
    ours = transcripts(real_whisper, sentences, "--num_beams", "1")
    assert "cold and windy" in ours[0].lower(), ours  # the real model hears the sentence
    assert transcripts(export, sentences, "--engine", "ctranslate2", "--num_beams", "1") == ours


def test_ctc_through_onnx_transcribes_as_transformers(ctc_model: Path, corpus: Path, tmp_path: Path) -> None:
    export = export_main(["--model", str(ctc_model), "--to", "onnx", "--output_dir", str(tmp_path / "onnx")])
    clips = sorted((corpus / "test").glob("*.wav"))[:4]
    ours = transcripts(ctc_model, clips)
    assert all(len(set(text)) > 3 for text in ours), ours  # varied letters: a difference in decoding would show
    assert transcripts(export, clips, "--engine", "onnx") == ours


def test_exports_refuse_what_they_cannot_do(ctc_model: Path, real_whisper: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with pytest.raises(UsageError, match="--to ctranslate2 exports Whisper models"):
        export_main(["--model", str(ctc_model), "--to", "ctranslate2", "--output_dir", str(tmp_path / "x")])
    with pytest.raises(UsageError, match="--to onnx exports CTC models"):
        export_main(["--model", str(real_whisper), "--to", "onnx", "--output_dir", str(tmp_path / "y")])
    with pytest.raises(UsageError, match="is \\(or holds\\) --model"):
        export_main(["--model", str(ctc_model), "--to", "onnx", "--output_dir", str(ctc_model)])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(UsageError, match="holds something other than an export"):
        export_main(["--model", str(ctc_model), "--to", "onnx", "--output_dir", str(tmp_path / "notes")])
    assert (ctc_model / "model.safetensors").is_file() and (tmp_path / "notes" / "todo.txt").is_file()
    with pytest.raises(UsageError, match="no model.onnx there"):
        make_transcriber(str(ctc_model), "onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UsageError, match=r"--engine onnx needs onnxruntime: pip install 'asr-finetune\[export\]'"):
        make_transcriber(str(ctc_model), "onnx")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
