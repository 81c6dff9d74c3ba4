"""8-bit Adam state (--optim adamw_bnb_8bit, bitsandbytes on CPU): it trains, its checkpoints hold the moments in 8
bits, a resumed run ends with the uninterrupted run's weights, and what cannot work is refused at start."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_faults import ctc_args

from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.errors import UsageError
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2

from conftest import REPO, run_on_free_port

CTC = REPO / "scripts" / "run_speech_recognition_ctc.py"

EIGHT_BIT = ("--optim", "adamw_bnb_8bit")


def losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def test_8bit_adam_trains_keeps_8_bit_moments_and_resumes_to_the_same_weights(corpus: Path, tmp_path: Path) -> None:
    # wide enough that bitsandbytes quantises its moments (it keeps tensors under 4096 values in 32 bits)
    model = save_tiny_wav2vec2(tmp_path / "model", hidden_size=64, layers=2, conv_channels=64)
    whole = tmp_path / "whole"
    ctc_main(ctc_args(model, corpus, whole, "--do_train", "--max_steps", "8", "--save_steps", "4", "--seed", "3",
                      *EIGHT_BIT))  # fmt: skip
    curve = losses(whole)
    assert len(curve) == 8 and sum(curve[-2:]) < sum(curve[:2])

    # Adam's two moments of every large weight matrix are stored as uint8 (bitsandbytes keeps small ones in 32 bits).
    state = torch.load(whole / "checkpoint-4" / "optimizer.pt", weights_only=False)["state"]
    moments = [entry.get("__bnb_optimizer_quant_state__", entry) for entry in state.values()]
    large = [entry for entry in moments if "state1" in entry and entry["state1"].numel() >= 4096]
    assert large and all(e["state1"].dtype == e["state2"].dtype == torch.uint8 for e in large)

    # As if killed right after checkpoint-4: the rerun resumes there and ends with the same weights.
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    for path in [resumed / "checkpoint-8", *resumed.glob("*.safetensors")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    ctc_main(ctc_args(model, corpus, resumed, "--do_train", "--max_steps", "8", "--save_steps", "4", "--seed",
                      "3", *EIGHT_BIT))  # fmt: skip
    assert losses(resumed) == pytest.approx(curve, rel=1e-6)
    first, second = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_what_8bit_adam_cannot_do_is_refused_at_start(tiny_model: Path, corpus: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with pytest.raises(UsageError, match=r"--optim paged_adamw_8bit: paged optimizers .* need CUDA"):
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "a", "--do_train", "--optim", "paged_adamw_8bit"))
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(UsageError, match=r"--optim adamw_bnb_8bit needs bitsandbytes: pip install "
                       r"'asr-finetune\[bnb\]'"):  # fmt: skip
        ctc_main(ctc_args(tiny_model, corpus, tmp_path / "b", "--do_train", *EIGHT_BIT))
    monkeypatch.delitem(sys.modules, "bitsandbytes")
    # bitsandbytes has no FSDP sharding rule for its update kernels: refused before any data is read.
    args = ctc_args(tiny_model, corpus, tmp_path / "c", "--do_train", "--fsdp", "full_shard", *EIGHT_BIT)
    done = run_on_free_port(lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                          "--master_port", port, str(CTC), *args], timeout=300)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "[rank0]: Traceback" not in output, output[-3000:]
    assert "--optim adamw_bnb_8bit with --fsdp: bitsandbytes' optimizers cannot update FSDP's sharded" in output
    assert not any((tmp_path / name / "vocab.json").exists() for name in "abc")
