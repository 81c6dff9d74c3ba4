"""Sharded data parallel training (--fsdp) on 2 CPU processes with gloo: it shards, checkpoints in parts, resumes
after kill -9, and ends in one plain model equal to what DDP trains."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from safetensors.torch import load_file

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.errors import UsageError
from asr_finetune.evaluation.transcription import make_transcriber
from asr_finetune.models.exports import export_model

from conftest import REPO, free_port, kill_when_saved, run_on_free_port

CTC = str(REPO / "scripts" / "run_speech_recognition_ctc.py")
FSDP = ("--fsdp", "full_shard auto_wrap")
STACK_RUNS_FSDP = int(transformers.__version__.split(".")[0]) >= 5  # the Gaudi stack's 4.55 refuses --fsdp


def ctc_args(model: Path, corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["--model_name_or_path", str(model), "--dataset_name", str(corpus), "--train_split_name", "train",
            "--eval_split_name", "test", "--output_dir", str(output_dir), "--do_train", "--do_eval",
            "--max_steps", "6", "--save_steps", "3", "--per_device_train_batch_size", "4",
            "--per_device_eval_batch_size", "4", "--learning_rate", "5e-3", "--logging_steps", "1",
            "--report_to", "none", "--disable_tqdm", "true", "--seed", "3", *extra]  # fmt: skip


def torchrun(port: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, CTC, *args]


def train(args: list[str]) -> str:
    proc = run_on_free_port(lambda port: torchrun(port, args), timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert log.count("World: 2 process(es)") == 2, log[-3000:]
    return log


def losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=atol, rtol=0, msg=name)


def weights_per_part(folder: Path) -> dict[str, int]:
    """How many weights each file of a torch.distributed.checkpoint folder holds (one file per process)."""
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(str(folder)).read_metadata()
    held: dict[str, int] = {}
    for index, item in metadata.storage_data.items():
        chunk = next(c for c in metadata.state_dict_metadata[index.fqn].chunks if c.offsets == index.offset)
        held[item.relative_path] = held.get(item.relative_path, 0) + math.prod(chunk.sizes)
    return held


def test_fsdp_shards_checkpoints_in_parts_resumes_after_kill_and_equals_ddp(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    ddp, whole, killed = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "killed"
    if not STACK_RUNS_FSDP:  # the Gaudi stack (transformers 4.55, accelerate 1.10.1): refused at start, in one line
        proc = run_on_free_port(lambda port: torchrun(port, ctc_args(tiny_model, corpus, whole, *FSDP)), timeout=600)
        assert proc.returncode != 0 and "--fsdp needs transformers >= 5" in proc.stdout + proc.stderr
        assert not (whole / "checkpoint-3").exists()
        return
    train(ctc_args(tiny_model, corpus, ddp))
    log = train(ctc_args(tiny_model, corpus, whole, *FSDP))
    # The tiny model is a stable-layer-norm wav2vec2 (as XLS-R): one FSDP unit per encoder layer.
    assert "FSDP2 on 2 processes" in log and "one unit per Wav2Vec2EncoderLayerStableLayerNorm" in log, log[-3000:]

    # The same training as DDP, step for step, and one plain model at the end (loads without FSDP).
    assert losses(whole) == pytest.approx(losses(ddp), rel=1e-4)
    assert_same_weights(whole, ddp, atol=1e-5)
    assert json.loads((whole / "eval_results.json").read_text())["eval_loss"] == pytest.approx(
        json.loads((ddp / "eval_results.json").read_text())["eval_loss"], rel=1e-4)  # fmt: skip

    # Each process holds half of the weights and of the Adam state.
    def state_gb(run: Path) -> float:
        return json.loads((run / "train_results.json").read_text())["train_model_and_optimizer_state_gb"]

    assert 0.4 < state_gb(whole) / state_gb(ddp) < 0.6, (state_gb(whole), state_gb(ddp))

    # Checkpoints hold one part per process and no gathered weights.
    checkpoint = whole / "checkpoint-3"
    parts = sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))
    assert parts == ["__0_0.distcp", "__1_0.distcp"]
    assert (checkpoint / "optimizer_0" / ".metadata").is_file()
    assert not (checkpoint / "model.safetensors").exists()
    held = weights_per_part(checkpoint / "pytorch_model_fsdp_0")
    total = sum(tensor.numel() for tensor in load_file(whole / "model.safetensors").values())
    assert sorted(held) == parts and all(0.4 * total < count < 0.6 * total for count in held.values()), (held, total)
    assert (checkpoint / "run_flags.json").is_file() and (checkpoint / "config.json").is_file()
    # Only training reads the parts: transcribing or exporting the checkpoint says to use the output dir.
    for use in (lambda: make_transcriber(str(checkpoint)), lambda: export_model(checkpoint, "onnx", tmp_path / "x")):
        with pytest.raises(UsageError, match=r"checkpoint-3 is a checkpoint of a sharded \(--fsdp\) run: .* Use the "
                           r"run's output dir"):  # fmt: skip
            use()

    # kill -9 after the first checkpoint, rerun: the very weights of the uninterrupted run.
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(torchrun(free_port(), ctc_args(tiny_model, corpus, killed, *FSDP)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    kill_when_saved(proc, killed / "checkpoint-3")
    assert not (killed / "checkpoint-6").exists(), "the run finished before the kill"
    log = train(ctc_args(tiny_model, corpus, killed, *FSDP))
    assert f"Resuming from {killed / 'checkpoint-3'}" in log
    assert losses(killed)[3:] == pytest.approx(losses(whole)[3:], rel=1e-5)
    assert_same_weights(killed, whole, atol=0)

    # The rerun of a finished run trains nothing, reads the sharded checkpoint, and evaluates the same model.
    (whole / "model.safetensors").rename(tmp_path / "published.safetensors")
    log = train(ctc_args(tiny_model, corpus, whole, *FSDP))
    assert "publishing it now from that checkpoint" in log, log[-3000:]
    assert load_file(whole / "model.safetensors").keys() == load_file(tmp_path / "published.safetensors").keys()
    for name, tensor in load_file(whole / "model.safetensors").items():
        assert torch.equal(tensor, load_file(tmp_path / "published.safetensors")[name]), name
    # Its parts are read only by a sharded run: the rerun without --fsdp says so instead of failing in transformers.
    with pytest.raises(UsageError, match=r"checkpoint-6 was written by a --fsdp run .* give the same --fsdp"):
        ctc_main(ctc_args(tiny_model, corpus, whole))


def test_fsdp_with_one_process_is_refused_at_start(tiny_model: Path, corpus: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(UsageError, match=r"--fsdp shards the model across processes, and this run has one: launch "
                       r"it with torchrun --nproc_per_node N"):  # fmt: skip
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "one", *FSDP))
    assert not (tmp_path / "one" / "vocab.json").exists()


def test_fsdp_whisper_trains_and_generates_as_ddp(corpus: Path, tmp_path: Path) -> None:
    """Whisper (encoder + decoder with tied embeddings, evaluated by generate()) under FSDP: the DDP run's losses,
    predictions and weights."""
    if not STACK_RUNS_FSDP:
        pytest.skip("--fsdp needs transformers >= 5 (its refusal is tested above)")
    from test_seq2seq import corpus_texts, seq2seq_args

    from asr_finetune.tools.tiny_models import save_tiny_whisper

    whisper = save_tiny_whisper(tmp_path / "whisper", corpus_texts(corpus), d_model=32, layers=1, heads=2)
    script = str(REPO / "scripts" / "run_speech_recognition_seq2seq.py")
    runs = {}
    for name, extra in (("ddp", ()), ("fsdp", FSDP)):
        out = tmp_path / name
        args = seq2seq_args(whisper, corpus, out, "--do_train", "--do_eval", "--max_steps", "3", "--seed", "3", *extra)
        proc = run_on_free_port(lambda port, args=args: [sys.executable, "-m", "torch.distributed.run",
                                                         "--nproc_per_node", "2", "--master_port", port, script,
                                                         *args], timeout=600)  # fmt: skip
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        runs[name] = out
    assert losses(runs["fsdp"]) == pytest.approx(losses(runs["ddp"]), rel=1e-4)
    assert (runs["fsdp"] / "eval_predictions.jsonl").read_text() == (runs["ddp"] / "eval_predictions.jsonl").read_text()
    ddp, fsdp = load_file(runs["ddp"] / "model.safetensors"), load_file(runs["fsdp"] / "model.safetensors")
    assert fsdp.keys() == ddp.keys()  # the tied output projection stored once, as DDP stores it
    for name, tensor in ddp.items():
        torch.testing.assert_close(fsdp[name], tensor, atol=1e-5, rtol=0, msg=name)


def test_deepspeed_on_cpu_is_refused_instead_of_training_unsharded(
    tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """Accelerate drops DeepSpeed on CPU processes (as it dropped FSDP): the run exited 0 having trained plain DDP."""
    from asr_finetune.training.sharding import check_sharding

    with pytest.raises(UsageError, match=r"--deepspeed on CPU processes: Accelerate leaves DeepSpeed out there, and "
                       r"the run would train plain DDP"):  # fmt: skip
        check_sharding(SimpleNamespace(deepspeed="ds_zero2.json", fsdp="", use_habana=False))
    # Without deepspeed installed, transformers refuses while parsing: one line naming the package.
    config = tmp_path / "ds_zero2.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match="needs a package that is not installed: .*deepspeed"):
            ctc_main(ctc_args(tiny_model, corpus, tmp_path / "ds", "--deepspeed", str(config)))
    else:
        with pytest.raises(UsageError, match="--deepspeed on CPU processes"):
            ctc_main(ctc_args(tiny_model, corpus, tmp_path / "ds", "--deepspeed", str(config)))


@pytest.mark.skipif(not STACK_RUNS_FSDP, reason="--fsdp needs transformers >= 5 (its refusal is tested above)")
def test_fsdp_combinations_that_cannot_work_are_refused_by_name(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from transformers import TrainingArguments

    from asr_finetune.training.sharding import check_sharding

    def check(args: TrainingArguments) -> None:
        with monkeypatch.context() as launched:  # as under torchrun, once the arguments are made
            launched.setenv("WORLD_SIZE", "2")
            check_sharding(args)

    refused = {
        "--save_only_model with --fsdp: a sharded checkpoint's weights are saved with the optimizer state": {
            "save_only_model": True},
        "--fsdp with --torch_compile is not supported yet": {"torch_compile": True},
        r"--fsdp_config version 1 \(FSDP1": {"fsdp_config": {"version": 1}},
        "--fsdp_config activation_checkpointing and --gradient_checkpointing both": {
            "fsdp_config": {"activation_checkpointing": True}, "gradient_checkpointing": True},
    }
    for message, settings in refused.items():
        args = TrainingArguments(output_dir=str(tmp_path), fsdp="full_shard auto_wrap", use_cpu=True, **settings)
        with pytest.raises(UsageError, match=message):
            check(args)
    args = TrainingArguments(output_dir=str(tmp_path), fsdp="full_shard auto_wrap", use_cpu=True)
    check(args)
    assert args.fsdp_plugin_args["state_dict_type"] == "SHARDED_STATE_DICT"  # the default this project sets
