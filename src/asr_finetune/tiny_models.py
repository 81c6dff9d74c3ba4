"""Small models built from configs and saved like any checkpoint, for the demo and the tests (no hub needed)."""

from __future__ import annotations

from pathlib import Path

from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

SAMPLING_RATE = 16_000


def wav2vec2_feature_extractor() -> Wav2Vec2FeatureExtractor:
    """A normalising 16 kHz raw-audio feature extractor (what layer-norm wav2vec2 models expect)."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def tiny_wav2vec2_config(hidden_size: int = 144, layers: int = 4, heads: int = 4, conv_channels: int = 64) -> Wav2Vec2Config:
    """A wav2vec2-shaped encoder of about one million parameters, 20 ms frames like the real ones.

    Stable layer norm and a layer-norm feature encoder, so the same config also serves pretraining.
    """
    return Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        conv_dim=(conv_channels,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=8,
        codevector_dim=64,
        proj_codevector_dim=64,
        num_codevectors_per_group=32,
        num_negatives=20,
        vocab_size=32,
    )


def save_tiny_wav2vec2(output_dir: str | Path, seed: int = 0, **config_kwargs: int) -> Path:
    """Save a randomly initialised tiny wav2vec2 (encoder + quantizer) and its feature extractor to ``output_dir``.

    Load it with ``--model_name_or_path output_dir``: the CTC head is added on load, sized to the vocab.
    """
    import torch

    torch.manual_seed(seed)
    output_dir = Path(output_dir)
    model = Wav2Vec2ForPreTraining(tiny_wav2vec2_config(**config_kwargs))
    model.save_pretrained(output_dir)
    wav2vec2_feature_extractor().save_pretrained(output_dir)
    return output_dir
