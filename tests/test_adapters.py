"""LoRA adapters (issue 25): only the adapters (and a new CTC head) train, a resumed run ends with the weights of an
uninterrupted one, the output dir holds a merged model that loads without peft and the adapter alone."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_faults import ctc_args
from test_seq2seq import corpus_texts, seq2seq_args

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.cli.seq2seq import main as seq2seq_main
from asr_finetune.errors import UsageError
from asr_finetune.evaluation.transcription import make_transcriber
from asr_finetune.tools.tiny_models import save_tiny_whisper

from conftest import REPO, kill_when_saved

LORA = ("--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0")


def weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def ctc_lora(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("lora") / "run"
    ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "6", "--save_steps",
                      "3", "--seed", "0", *LORA))  # fmt: skip
    return output_dir


def test_only_adapters_and_the_new_head_train(tiny_model: Path, ctc_lora: Path) -> None:
    final, start = weights(ctc_lora), load_file(str(tiny_model / "model.safetensors"))
    assert not any("lora_" in name or "base_layer" in name for name in final)  # merged: plain transformers names
    changed = {name for name, tensor in start.items() if name in final and not torch.equal(tensor, final[name])}
    # the merged LoRA updates land in the attention projections, nowhere else of the pretrained encoder
    assert changed and all(name.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "out_proj") for name in changed)
    state = json.loads((ctc_lora / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    # A checkpoint keeps the adapters apart: only training reads it, transcription says to use the output dir.
    with pytest.raises(UsageError, match=r"checkpoint-6 is a checkpoint of a --use_peft run: its LoRA adapters are "
                       r"not merged"):  # fmt: skip
        make_transcriber(str(ctc_lora / "checkpoint-6"))


def test_merged_model_loads_in_pipeline_without_peft(ctc_lora: Path) -> None:
    row = json.loads((ctc_lora / "eval_predictions.jsonl").read_text().splitlines()[0])
    script = (
        "import sys; sys.modules['peft'] = None\n"  # as if peft were not installed
        "from transformers import pipeline\n"
        "from asr_finetune.data.audio import load_audio\n"
        f"asr = pipeline('automatic-speech-recognition', model={str(ctc_lora)!r})\n"
        f"print(repr(asr({{'raw': load_audio({row['id']!r}, 16_000), 'sampling_rate': 16_000}})['text'].strip()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == repr(row["hypothesis"])


def test_the_adapter_alone_loads_with_peft_onto_the_base_model(tiny_model: Path, ctc_lora: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import Wav2Vec2ForCTC

    config = json.loads((ctc_lora / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["modules_to_save"] == ["lm_head"]
    size = sum(p.stat().st_size for p in (ctc_lora / "adapter").iterdir())
    assert size < (ctc_lora / "model.safetensors").stat().st_size / 2
    merged = Wav2Vec2ForCTC.from_pretrained(ctc_lora).eval()
    base = Wav2Vec2ForCTC.from_pretrained(tiny_model, vocab_size=merged.config.vocab_size,
                                          pad_token_id=merged.config.pad_token_id)  # fmt: skip
    adapted = peft.PeftModel.from_pretrained(base, ctc_lora / "adapter").eval()
    audio = torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(adapted(audio).logits, merged(audio).logits, atol=1e-4)


def test_a_resumed_lora_run_ends_with_the_uninterrupted_weights(
    tiny_model: Path, corpus: Path, ctc_lora: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "run"
    args = ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "6", "--save_steps", "3", "--seed",
                    "0", *LORA)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # threads as the in-process run picks them
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run_speech_recognition_ctc.py"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    kill_when_saved(proc, output_dir / "checkpoint-3")  # kill -9 right after the first checkpoint
    assert not (output_dir / "checkpoint-6").exists(), "the run finished before the kill"
    ctc_main(args)
    resumed, uninterrupted = weights(output_dir), weights(ctc_lora)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.allclose(resumed[name], uninterrupted[name], atol=1e-6) for name in resumed)


def test_a_resume_with_other_adapter_flags_is_refused(tiny_model: Path, corpus: Path, ctc_lora: Path,
                                                      tmp_path: Path) -> None:  # fmt: skip
    output_dir = tmp_path / "run"
    shutil.copytree(ctc_lora, output_dir)
    shutil.rmtree(output_dir / "checkpoint-6")
    with pytest.raises(UsageError, match="lora_r"):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--max_steps", "6", "--save_steps", "3",
                          "--use_peft", "--lora_r", "2"))  # fmt: skip


def test_whisper_lora_trains_the_attention_of_encoder_and_decoder(
    corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whisper = save_tiny_whisper(tmp_path / "whisper", corpus_texts(corpus), d_model=32, layers=1, heads=2)
    output_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        seq2seq_main(seq2seq_args(whisper, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "4", *LORA))
    assert "LoRA r=4 alpha=8 on q_proj k_proj v_proj out_proj" in caplog.text
    changed = {name for name, tensor in load_file(str(whisper / "model.safetensors")).items()
               if not torch.equal(tensor, weights(output_dir)[name])}  # fmt: skip
    assert any(".encoder." in name for name in changed) and any(".decoder." in name for name in changed)
    assert all(name.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "out_proj") for name in changed)
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_wer"] >= 0


def test_bad_adapter_settings_are_refused_at_start(tiny_model: Path, corpus: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with pytest.raises(UsageError, match=r"--lora_target_modules qkv: Wav2Vec2ForCTC has no linear layer of that "
                       r"name\. Its linear layers: .*q_proj"):  # fmt: skip
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "a", "--do_train", "--max_steps", "1", "--use_peft",
                          "--lora_target_modules", "qkv", "q_proj"))  # fmt: skip
    # transformers 4.x's TrainingArguments exports --torch_compile as ACCELERATE_DYNAMO_BACKEND, and the launch set-up
    # sets MASTER_ADDR: left in os.environ, every later run in this Python and every process it started compiled.
    monkeypatch.delenv("ACCELERATE_DYNAMO_BACKEND", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    environment = dict(os.environ)
    with pytest.raises(UsageError, match="--use_peft with --torch_compile is not supported yet"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "b", "--do_train", "--use_peft", "--torch_compile"))
    assert dict(os.environ) == environment
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(UsageError, match=r"--use_peft needs peft: pip install 'asr-finetune\[peft\]'"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "c", "--do_train", "--use_peft"))


def test_rerunning_a_finished_lora_run_without_adapters_is_refused(tiny_model: Path, corpus: Path, ctc_lora: Path,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    output_dir = tmp_path / "run"
    shutil.copytree(ctc_lora, output_dir)
    # finished, so nothing would train: but its weights are LoRA-shaped, and loading them into a plain model would
    # silently leave the attention at the base weights
    with pytest.raises(UsageError, match="use_peft"):
        ctc_main(ctc_args(tiny_model, corpus, output_dir, "--do_train", "--do_eval", "--max_steps", "6",
                          "--save_steps", "3", "--seed", "0"))  # fmt: skip
