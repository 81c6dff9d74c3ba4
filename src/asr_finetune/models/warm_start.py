"""Warm-starting a speech encoder-decoder (scripts/create_speech_encoder_decoder.py): join a pretrained speech
encoder and text decoder, set the decoder's special tokens and generation defaults, check it generates, save it with
its processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, GenerationConfig, PreTrainedModel, SpeechEncoderDecoderModel

from asr_finetune.errors import UsageError
from asr_finetune.models.loading import load_feature_extractor
from asr_finetune.models.seq2seq import consistent_decoder_layers, load_tokenizer, make_processor, save_processor


def special_token_ids(decoder_config: Any, tokenizer: Any) -> dict[str, int]:
    """decoder_start / pad / eos ids for a warm-started model: the decoder's config first, then its tokenizer.

    The decoder starts from its BOS token (``<s>`` for BART), as the reference recipe sets it.
    """

    def first(*candidates: int | None) -> int | None:
        return next((value for value in candidates if value is not None), None)

    ids = {
        "decoder_start_token_id": first(decoder_config.bos_token_id, tokenizer.bos_token_id, tokenizer.cls_token_id),
        "pad_token_id": first(decoder_config.pad_token_id, tokenizer.pad_token_id),
        "eos_token_id": first(decoder_config.eos_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id),
    }
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise UsageError(
            f"The decoder has no {', '.join(missing)} (neither its config nor its tokenizer defines one). Use a "
            "decoder with BOS/PAD/EOS tokens (BART, mBART, GPT-2 with a pad token, BERT), or set them in its config."
        )
    return ids


def create_speech_encoder_decoder(
    encoder: str,
    decoder: str,
    output_dir: str | Path,
    *,
    encoder_add_adapter: bool = True,
    encoder_feat_proj_dropout: float = 0.0,
    encoder_layerdrop: float = 0.0,
    max_length: int = 200,
    num_beams: int = 5,
    feature_extractor_name: str | None = None,
    tokenizer_name: str | None = None,
    seed: int = 0,
) -> SpeechEncoderDecoderModel:
    """Join a pretrained speech encoder and text decoder into one model and save it with its processor.

    The cross-attention (and an adapter / projection where sizes differ) start random, from ``seed``. The saved
    dir loads with ``--model_name_or_path`` like any seq2seq checkpoint.
    """
    feature_extractor = load_feature_extractor(feature_extractor_name or encoder)
    tokenizer = load_tokenizer(tokenizer_name or decoder)
    # The decoder config is loaded here and marked as a cross-attending decoder: transformers 5.x reads
    # ``add_cross_attention`` from it, which BartConfig (among others) no longer defines, and fails otherwise.
    decoder_config = AutoConfig.from_pretrained(decoder)
    decoder_config.is_decoder = True
    decoder_config.add_cross_attention = True
    consistent_decoder_layers(decoder_config, decoder)
    torch.manual_seed(seed)
    model = SpeechEncoderDecoderModel.from_encoder_decoder_pretrained(
        encoder,
        decoder,
        encoder_add_adapter=encoder_add_adapter,
        encoder_feat_proj_dropout=encoder_feat_proj_dropout,
        encoder_layerdrop=encoder_layerdrop,
        decoder_config=decoder_config,
    )
    model.float()  # an fp16 encoder or decoder checkpoint stays fp16 on transformers 5.x; training wants float32
    decoder_vocab = model.decoder.config.vocab_size
    if len(tokenizer) > decoder_vocab:
        raise UsageError(
            f"The tokenizer of {tokenizer_name or decoder} has {len(tokenizer)} tokens but the decoder only "
            f"{decoder_vocab} embeddings: pass the decoder's own tokenizer with --tokenizer_name."
        )
    ids = special_token_ids(model.decoder.config, tokenizer)
    for name, value in ids.items():
        setattr(model.config, name, value)
    bos = model.decoder.config.bos_token_id
    model.generation_config = GenerationConfig(**ids, bos_token_id=bos, max_length=max_length, num_beams=num_beams)
    check_generation(model, feature_extractor)
    output_dir = Path(output_dir)
    model.save_pretrained(str(output_dir))
    save_processor(output_dir, make_processor(feature_extractor, tokenizer), feature_extractor, tokenizer)
    return model


def check_generation(model: PreTrainedModel, feature_extractor: Any) -> None:
    """Generate two tokens from one second of silence: a wiring mistake fails here, not hours into training."""
    rate = feature_extractor.sampling_rate
    inputs = feature_extractor(np.zeros(rate, dtype=np.float32), sampling_rate=rate, return_tensors="pt")
    name = feature_extractor.model_input_names[0]
    with torch.no_grad():
        model.eval()
        model.generate(inputs[name], max_length=3, num_beams=1)
