"""wav2vec2 pretraining: masks and negatives, schedules, config checks, the script end to end on 1 and 2 processes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

from asr_finetune.args import parse_args
from asr_finetune.cli.ctc import main as ctc_main
from asr_finetune.cli.pretraining import main
from asr_finetune.models.loading import encoder_frames
from asr_finetune.tasks.pretraining.arguments import PRETRAINING
from asr_finetune.tasks.pretraining.data import PretrainingCollator
from asr_finetune.tasks.pretraining.health import HealthMonitor
from asr_finetune.tasks.pretraining.log import LOG_FILE
from asr_finetune.tasks.pretraining.loop import RESULTS_FILE
from asr_finetune.tasks.pretraining.masks import gumbel_temperature
from asr_finetune.tasks.pretraining.model import PretrainingConfigError, decay_parameter_groups
from asr_finetune.tools.tiny_models import tiny_wav2vec2_config, wav2vec2_feature_extractor

from conftest import REPO, read_png, run_on_free_port, tensorboard_scalars

SCRIPT = REPO / "scripts" / "run_wav2vec2_pretraining_no_trainer.py"


def pretraining_args(model: Path, corpus: Path, output_dir: Path, *extra: str) -> list[str]:
    """The seed README's demo command line, with a local dataset and model dir, sized for a tiny model."""
    return [
        "--dataset_name", str(corpus), "--dataset_config_names", "clean", "clean",
        "--dataset_split_names", "train", "validation", "--model_name_or_path", str(model),
        "--output_dir", str(output_dir), "--num_warmup_steps", "2", "--gradient_accumulation_steps", "1",
        "--learning_rate", "5e-3", "--lr_scheduler_type", "constant_with_warmup", "--weight_decay", "0.01",
        "--max_duration_in_seconds", "20.0",
        "--min_duration_in_seconds", "0.5", "--logging_steps", "1", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "4", "--adam_beta1", "0.9", "--adam_beta2", "0.98",
        "--adam_epsilon", "1e-06", "--mask_time_prob", "0.3", "--mask_time_length", "5",
        "--validation_split_percentage", "10", "--gumbel_temperature_decay", "0.99", "--disable_tqdm", *extra,
    ]


def log_records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / LOG_FILE).read_text().splitlines()]


def train_records(output_dir: Path) -> list[dict]:
    return [record for record in log_records(output_dir) if "loss" in record]


@pytest.fixture(scope="module")
def pretrained(tiny_model: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output_dir = tmp_path_factory.mktemp("pretrain") / "run"
    main(pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "24", "--saving_steps", "6",
                          "--report_to", "tensorboard"))
    return output_dir


# ---------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("model_type", ["wav2vec2", "wav2vec2-adapter", "hubert", "wavlm"])
def test_encoder_frames_match_the_models_own_count(model_type: str) -> None:
    from transformers import AutoModel, HubertConfig, WavLMConfig

    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
             "conv_dim": (32, 32, 32), "conv_kernel": (10, 3, 2), "conv_stride": (5, 2, 2)}
    config = {
        "wav2vec2": lambda: Wav2Vec2Config(**small),
        "wav2vec2-adapter": lambda: Wav2Vec2Config(**small, add_adapter=True, num_adapter_layers=2, adapter_stride=2,
                                                   output_hidden_size=32),
        "hubert": lambda: HubertConfig(**small),
        "wavlm": lambda: WavLMConfig(**small),
    }[model_type]()
    model = AutoModel.from_config(config)
    samples = torch.tensor([400, 1000, 16_000, 33_333])
    assert encoder_frames(config, samples).tolist() == model._get_feat_extract_output_lengths(samples).tolist()


def test_masks_and_negatives_stay_inside_each_utterance() -> None:
    np.random.seed(0)
    config = tiny_wav2vec2_config(hidden_size=32, layers=1, conv_channels=32)
    config.mask_time_prob, config.mask_time_length = 0.65, 5
    collator = PretrainingCollator(wav2vec2_feature_extractor(), config)
    lengths = [32_000, 16_000, 3_000, 1_000]  # the last two have 9 and 2 frames: one span or none
    batch = collator([{"input_values": np.random.randn(n).astype(np.float32), "seconds": n / 16_000} for n in lengths])
    mask, negatives, frames = batch["mask_time_indices"], batch["sampled_negative_indices"], batch["sub_attention_mask"]
    num_frames = mask.shape[1]
    assert frames.sum(-1).tolist() == encoder_frames(config, lengths).tolist()
    assert not (mask & ~frames).any(), "a masked frame lies in the padding"
    assert mask[0].float().mean() > 0.3 and mask[1].any() and not mask[3].any()
    for row in range(len(lengths)):
        masked = set(torch.nonzero(mask[row]).flatten().tolist())
        for frame in masked:
            drawn = (negatives[row, frame] - row * num_frames).tolist()
            assert set(drawn) <= masked - {frame}, "negatives must be other masked frames of the same utterance"
    assert batch["attention_mask"].sum().item() == sum(lengths)
    assert batch["audio_seconds"].item() == pytest.approx(sum(lengths) / 16_000)


def test_gumbel_temperature_decays_to_its_floor() -> None:
    assert gumbel_temperature(0, 2.0, 0.5, 0.999995) == 2.0
    assert gumbel_temperature(1000, 2.0, 0.5, 0.999) == pytest.approx(2.0 * 0.999**1000)
    assert gumbel_temperature(10**6, 2.0, 0.5, 0.999) == 0.5


def test_weight_decay_reaches_weights_but_not_biases_or_norms() -> None:
    model = Wav2Vec2ForPreTraining(tiny_wav2vec2_config(hidden_size=32, layers=1, conv_channels=32))
    groups = decay_parameter_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert "wav2vec2.encoder.layer_norm.weight" in no_decay and "project_hid.bias" in no_decay
    assert "quantizer.codevectors" in no_decay and "project_hid.weight" not in no_decay
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(groups, lr=0.5)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["project_hid.weight"], before["project_hid.weight"] * 0.95)
    assert torch.equal(after["project_hid.bias"], before["project_hid.bias"])


def test_health_monitor_warns_once_per_episode() -> None:
    monitor = HealthMonitor(num_groups=2, num_codevectors=64, patience=3)
    warnings = [monitor.check(step, grad_norm=5.0, perplexity=30.0) for step in range(1, 6)]
    assert [len(w) for w in warnings] == [0, 0, 1, 0, 0] and "outside 0.5..2" in warnings[2][0]
    assert monitor.check(6, grad_norm=1.0, perplexity=30.0) == []
    collapse = monitor.check(7, grad_norm=1e-19, perplexity=2.0)
    assert len(collapse) == 1 and "collapsed" in collapse[0]
    assert monitor.check(8, grad_norm=1e-19, perplexity=2.0) == []


def test_config_that_cannot_be_pretrained_names_each_setting(corpus: Path, tmp_path: Path) -> None:
    Wav2Vec2Config(do_stable_layer_norm=False, feat_extract_norm="group").save_pretrained(tmp_path / "base")
    Wav2Vec2FeatureExtractor(do_normalize=False).save_pretrained(tmp_path / "base")
    with pytest.raises(PretrainingConfigError) as error:
        main(pretraining_args(tmp_path / "base", corpus, tmp_path / "out", "--max_train_steps", "1"))
    message = str(error.value)
    assert '"do_stable_layer_norm": true' in message and '"feat_extract_norm": "layer"' in message
    assert '"do_normalize": true' in message
    assert not (tmp_path / "out").exists(), "nothing should be read or written before the check"


def test_demo_json_config_parses() -> None:
    config = str(REPO / "configs" / "pretraining" / "demo_pretraining.json")
    args, batching = parse_args(PRETRAINING.arguments, [config])
    assert args.dataset_split_names == ["train"] and args.max_train_steps > 0 and not batching.enabled


def test_config_and_split_pairs_are_concatenated(tiny_model: Path, corpus: Path, tmp_path: Path) -> None:
    main(pretraining_args(tiny_model, corpus, tmp_path, "--preprocessing_only"))
    report = json.loads((tmp_path / "data_report.json").read_text())
    kept = report["train"]["utterances"] + report["validation"]["utterances"]
    assert kept == 32 + 4 - sum(report["train"]["dropped"].values())
    assert report["validation"]["utterances"] == 3


# ---------------------------------------------------------------------------------------------- end to end


def test_pretraining_loss_falls_and_logs_every_figure(pretrained: Path) -> None:
    records = train_records(pretrained)
    assert [r["step"] for r in records] == list(range(1, 25))
    losses = [r["loss"] for r in records]
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 * 0.95, losses
    for key in ("contrastive_loss", "diversity_loss", "perplexity", "masked_pct", "lr", "gumbel_temperature",
                "grad_norm", "audio_seconds_per_second"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert 10 < records[0]["masked_pct"] < 60
    assert records[0]["gumbel_temperature"] == 2.0 and records[-1]["gumbel_temperature"] == pytest.approx(2 * 0.99**23)
    assert records[-1]["perplexity"] > 4, "codebook collapsed"
    evals = [r for r in log_records(pretrained) if "eval_loss" in r]
    assert evals and np.isfinite(evals[-1]["eval_loss"])
    results = json.loads((pretrained / RESULTS_FILE).read_text())
    assert results["global_step"] == 24 and results["world_size"] == 1
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "checkpoint-18/trainer_state.json",
                 "checkpoint-24/trainer_state.json", "checkpoint-24/optimizer.bin", "data_report.json"):
        assert (pretrained / name).is_file(), name
    assert not list(pretrained.glob(".*partial*"))


def test_pretraining_draws_its_curves_and_reports_to_tensorboard(pretrained: Path) -> None:
    image = read_png(pretrained / "training_curves.png")
    assert image.shape[0] > 400 and image.shape[1] > 600
    # TensorBoard holds the figures of pretraining_log.jsonl, step by step.
    found = tensorboard_scalars(pretrained)
    records = train_records(pretrained)
    for key in ("loss", "perplexity", "grad_norm"):
        assert dict(found[key]) == pytest.approx({r["step"]: r[key] for r in records}, rel=1e-5), key
    evals = [r for r in log_records(pretrained) if "eval_loss" in r]
    assert dict(found["eval_loss"]) == pytest.approx({r["step"]: r["eval_loss"] for r in evals}, rel=1e-5)


def test_pretrained_dir_is_a_model_for_the_ctc_script(pretrained: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctc"
    ctc_main([
        "--model_name_or_path", str(pretrained), "--dataset_name", str(corpus), "--output_dir", str(out),
        "--train_split_name", "train", "--do_train", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--report_to", "none", "--disable_tqdm", "true", "--learning_rate", "1e-3",
    ])
    assert (out / "model.safetensors").is_file()
    ctc = Wav2Vec2ForCTC.from_pretrained(out)
    source = Wav2Vec2ForPreTraining.from_pretrained(pretrained)
    # The feature encoder is frozen by default in CTC fine-tuning, so it must be the pretrained one, unchanged.
    name = "feature_extractor.conv_layers.1.conv.weight"
    assert torch.equal(ctc.wav2vec2.state_dict()[name], source.wav2vec2.state_dict()[name])


def test_rerun_resumes_at_the_checkpoint_step_and_temperature(
    pretrained: Path, tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = tmp_path / "resume"
    shutil.copytree(pretrained, output_dir)
    (output_dir / "checkpoint-24" / "trainer_state.json").unlink()  # as if killed while saving checkpoint-24
    state = json.loads((output_dir / "checkpoint-18" / "trainer_state.json").read_text())
    assert state["global_step"] == 18 and state["gumbel_temperature"] == pytest.approx(2 * 0.99**18)
    with caplog.at_level(logging.WARNING):
        main(pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "24", "--saving_steps", "6"))
    assert "Resumed from" in caplog.text and "checkpoint-18" in caplog.text
    assert "Ignoring incomplete checkpoint" in caplog.text
    before, after = train_records(pretrained), train_records(output_dir)
    assert [r["step"] for r in after] == list(range(1, 25))
    assert [r["gumbel_temperature"] for r in after] == [r["gumbel_temperature"] for r in before]
    assert [r["lr"] for r in after] == pytest.approx([r["lr"] for r in before])
    # Same data order, masks, Gumbel noise and optimizer state: the resumed steps repeat the uninterrupted run.
    assert [r["loss"] for r in after[18:]] == pytest.approx([r["loss"] for r in before[18:]], rel=1e-4)
    assert json.loads((output_dir / RESULTS_FILE).read_text())["global_step"] == 24


def test_two_cpu_processes_train_one_model_with_the_same_loss_scale(
    pretrained: Path, tiny_model: Path, corpus: Path, tmp_path: Path
) -> None:
    """2 processes x 2 clips against the 1 process x 4 clips of ``pretrained``: same clips per step, same init."""
    output_dir = tmp_path / "ddp"
    args = pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "3", "--saving_steps", "3")
    args[args.index("--per_device_train_batch_size") + 1] = "2"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    done = run_on_free_port(
        lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                      "127.0.0.1", "--master_port", port, str(SCRIPT), *args],
        env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Process 1 of 2" in done.stdout + done.stderr
    results = json.loads((output_dir / RESULTS_FILE).read_text())
    assert results["world_size"] == 2
    two, one = train_records(output_dir), train_records(pretrained)[:3]
    assert [r["lr"] for r in two] == pytest.approx([r["lr"] for r in one])
    ratio = sum(r["loss"] for r in two) / sum(r["loss"] for r in one)
    assert 0.85 < ratio < 1.15, (two, one)
    assert (output_dir / "checkpoint-3" / "rng_state_1.pt").is_file(), "each process saves its RNG state"


def test_rerun_of_a_finished_pretraining_changes_nothing(
    pretrained: Path, tiny_model: Path, corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output_dir = tmp_path / "again"
    shutil.copytree(pretrained, output_dir)
    before = {name: (output_dir / name).read_bytes() for name in ("model.safetensors", RESULTS_FILE)}
    with caplog.at_level(logging.WARNING):
        main(pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "24", "--saving_steps", "6"))
    assert "Pretraining is already complete" in caplog.text
    assert {name: (output_dir / name).read_bytes() for name in before} == before


def test_resume_reads_no_pickle_from_the_output_dir(pretrained: Path, tiny_model: Path, corpus: Path,
                                                    tmp_path: Path) -> None:
    """A pickle planted in a checkpoint (as accelerate's custom_checkpoint_*.pkl / random_states_*.pkl were) must
    not run on resume."""
    import pickle

    output_dir = tmp_path / "planted"
    shutil.copytree(pretrained, output_dir)
    (output_dir / "checkpoint-24" / "trainer_state.json").unlink()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    checkpoint = output_dir / "checkpoint-18"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):
        (checkpoint / name).write_bytes(pickle.dumps(Payload()))
    assert not list(pretrained.rglob("*.pkl")), "checkpoints hold no pickle files"
    main(pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "20", "--saving_steps", "6"))
    assert json.loads((output_dir / RESULTS_FILE).read_text())["global_step"] == 20
    assert not marker.exists()
    # The files we load with torch.load refuse pickled objects (weights_only=True), also inside a whole torch file.
    torch.save(Payload(), checkpoint / "optimizer.bin")
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        main(pretraining_args(tiny_model, corpus, output_dir, "--max_train_steps", "24", "--saving_steps", "6",
                              "--resume_from_checkpoint", str(checkpoint)))
    assert not marker.exists()
