"""The time-major conv feature encoder: same outputs and gradients as transformers', on every wav2vec2-family model
that layer-normalises its conv layers; left alone where it does not apply."""

import copy

import pytest
import torch
from transformers import (
    Data2VecAudioConfig,
    Data2VecAudioForCTC,
    HubertConfig,
    HubertForCTC,
    Wav2Vec2Config,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
    WavLMConfig,
    WavLMForCTC,
)

from asr_finetune.errors import UsageError
from asr_finetune.models.feature_encoder import conv_time_major, speed_up_feature_encoders, uses_fast_forward

SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
         "conv_dim": [16] * 7, "vocab_size": 12, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def small(model_class: type, config_class: type, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = config_class(**{**SMALL, "feat_extract_norm": "layer", "do_stable_layer_norm": True, **overrides})
    return model_class(config).train()


def encoder(model: torch.nn.Module) -> torch.nn.Module:
    return next(m for m in model.modules() if type(m).__name__.endswith("FeatureEncoder"))


@pytest.mark.parametrize(
    ("model_class", "config_class", "overrides"),
    [
        (Wav2Vec2ForCTC, Wav2Vec2Config, {"conv_bias": True}),  # XLS-R, wav2vec2-large-lv60
        (Wav2Vec2ForCTC, Wav2Vec2Config, {"conv_bias": False}),
        (HubertForCTC, HubertConfig, {"conv_bias": True}),
        (WavLMForCTC, WavLMConfig, {"conv_bias": True}),
        (Data2VecAudioForCTC, Data2VecAudioConfig, {}),
        (Wav2Vec2ForPreTraining, Wav2Vec2Config, {"conv_bias": True}),
    ],
)
def test_outputs_and_gradients_match_transformers(model_class: type, config_class: type, overrides: dict) -> None:
    theirs = small(model_class, config_class, **overrides)
    ours = copy.deepcopy(theirs)
    assert speed_up_feature_encoders(ours, "cpu") == 1 and uses_fast_forward(ours)
    audio = torch.randn(3, 16000)
    expected, got = encoder(theirs)(audio), encoder(ours)(audio)
    assert got.shape == expected.shape  # (batch, channels, frames), as transformers returns
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    for (name, a), b in zip(encoder(theirs).named_parameters(), encoder(ours).parameters(), strict=True):
        error = float((b.grad - a.grad).abs().max() / a.grad.abs().max())
        assert error < 1e-4, f"{name}: gradient off by {error:.1e} of its largest entry"
    # the checkpoint is the same one: nothing but forward changed
    assert ours.state_dict().keys() == theirs.state_dict().keys()


@pytest.mark.parametrize(("kernel", "stride", "time"), [
    (10, 5, 403), (3, 2, 80), (3, 2, 81), (2, 2, 64), (2, 2, 65), (4, 2, 50), (2, 3, 41), (1, 1, 9), (5, 1, 30),
])
def test_a_conv_as_windows_matches_torch_conv(kernel: int, stride: int, time: int) -> None:
    # every layout wav2vec2-family configs use (10/5, 3/2, 2/2), kernels that are and are not multiples of the
    # stride, a stride beyond the kernel, and lengths that leave trailing samples out of every window
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(3, 5, kernel, stride)
    audio = torch.randn(2, 3, time, requires_grad=True)  # channels-first, as torch's conv takes it
    expected = conv(audio)
    weights = torch.randn_like(expected)
    expected_grads = torch.autograd.grad((expected * weights).sum(), (audio, conv.weight, conv.bias))
    time_major = audio.detach().transpose(1, 2).contiguous().requires_grad_()
    got = conv_time_major(time_major, conv)
    torch.testing.assert_close(got.transpose(1, 2), expected, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad((got.transpose(1, 2) * weights).sum(), (time_major, conv.weight, conv.bias))
    torch.testing.assert_close(grads[0].transpose(1, 2), expected_grads[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], expected_grads[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[2], expected_grads[2], rtol=1e-5, atol=1e-5)


def test_a_whole_model_step_is_unchanged() -> None:
    theirs = small(Wav2Vec2ForCTC, Wav2Vec2Config, conv_bias=True, layerdrop=0.0, mask_time_prob=0.0,
                   hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                   final_dropout=0.0)
    ours = copy.deepcopy(theirs)
    speed_up_feature_encoders(ours, "cpu")
    batch = {"input_values": torch.randn(2, 12000), "labels": torch.randint(1, 12, (2, 5))}
    loss_theirs, loss_ours = theirs(**batch).loss, ours(**batch).loss
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=1e-5, atol=1e-6)


def test_group_norm_encoders_keep_transformers_forward() -> None:
    # wav2vec2-base style: transformers' own forward is the faster one there
    model = small(Wav2Vec2ForCTC, Wav2Vec2Config, feat_extract_norm="group", do_stable_layer_norm=False)
    assert speed_up_feature_encoders(model, "cpu") == 0 and not uses_fast_forward(model)


@pytest.mark.parametrize("device_type", ["cuda", "hpu"])
def test_other_devices_keep_transformers_forward(device_type: str) -> None:
    model = small(Wav2Vec2ForCTC, Wav2Vec2Config)
    assert speed_up_feature_encoders(model, device_type) == 0


def test_the_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASR_FINETUNE_FAST_FEATURE_ENCODER", "0")
    assert speed_up_feature_encoders(small(Wav2Vec2ForCTC, Wav2Vec2Config), "cpu") == 0


def test_an_unknown_switch_value_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASR_FINETUNE_FAST_FEATURE_ENCODER", "maybe")
    with pytest.raises(UsageError, match="ASR_FINETUNE_FAST_FEATURE_ENCODER='maybe'"):
        speed_up_feature_encoders(small(Wav2Vec2ForCTC, Wav2Vec2Config), "cpu")


def test_gradient_checkpointing_runs_transformers_layers() -> None:
    model = small(Wav2Vec2ForCTC, Wav2Vec2Config)
    speed_up_feature_encoders(model, "cpu")
    calls = []
    encoder(model).conv_layers[0].register_forward_hook(lambda *_: calls.append(1))
    encoder(model)(torch.randn(1, 4000))
    assert calls == []  # the fast forward runs the layers' parts itself
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    encoder(model)(torch.randn(1, 4000))
    assert calls == [1]  # checkpointed: transformers' forward, layer by layer
