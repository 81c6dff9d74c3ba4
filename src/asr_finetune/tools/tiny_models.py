"""Small models built from configs and saved like any checkpoint, for the demo and the tests (no hub needed)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining

SAMPLING_RATE = 16_000


def wav2vec2_feature_extractor() -> Wav2Vec2FeatureExtractor:
    """A normalising 16 kHz raw-audio feature extractor (what layer-norm wav2vec2 models expect)."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def tiny_wav2vec2_config(
    hidden_size: int = 144, layers: int = 4, heads: int = 4, conv_channels: int = 64
) -> Wav2Vec2Config:
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


# ---------------------------------------------------------------------------------------------- seq2seq


BART_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def train_byte_level_bpe(
    texts: Iterable[str],
    output_dir: str | Path,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    added_tokens: Sequence[str] = (),
) -> Path:
    """Train a byte-level BPE (the GPT-2 / BART / Whisper kind) on ``texts``; writes vocab.json and merges.txt
    (and tokenizer.json when there are ``added_tokens``).

    ``special_tokens`` take the first ids, ``added_tokens`` (special too) the ids after the learned vocabulary,
    in order. Every byte is in the alphabet, so no text is unknown.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    tokenizer.add_special_tokens(list(added_tokens))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.model.save(str(output_dir))
    if added_tokens:  # vocab.json + merges.txt cannot hold them; transformers then reads tokenizer.json
        tokenizer.save(str(output_dir / "tokenizer.json"))
    return output_dir


def _load_trained_tokenizer(directory: Path, tokenizer_class: str, **config: Any) -> Any:
    """Load vocab.json + merges.txt as ``tokenizer_class`` the way any checkpoint's tokenizer is loaded."""
    from transformers import AutoTokenizer

    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class, **config}))
    return AutoTokenizer.from_pretrained(str(directory))


def save_tiny_bart_decoder(
    output_dir: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 400,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 128,
    seed: int = 0,
    encoder_layers: int | None = None,
) -> Path:
    """Save a randomly initialised BART-shaped decoder and a byte-level BPE tokenizer trained on ``texts``.

    The directory is a decoder checkpoint like ``facebook/bart-base`` for
    ``scripts/create_speech_encoder_decoder.py --decoder``: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3.
    """
    import torch
    from transformers import BartConfig, BartForCausalLM

    output_dir = train_byte_level_bpe(texts, output_dir, vocab_size, BART_SPECIAL_TOKENS)
    tokenizer = _load_trained_tokenizer(output_dir, "BartTokenizer", model_max_length=max_positions)
    tokenizer.save_pretrained(output_dir)
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=d_model,
        encoder_layers=layers if encoder_layers is None else encoder_layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=d_model * 4,
        decoder_ffn_dim=d_model * 4,
        max_position_embeddings=max_positions,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    BartForCausalLM(config).save_pretrained(output_dir)
    return output_dir


def whisper_special_tokens() -> list[str]:
    """Whisper's special tokens in the order its tokenizer assumes (language ids follow ``<|startoftranscript|>``)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def save_tiny_whisper(
    output_dir: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 400,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_target_positions: int = 448,
    multilingual: bool = True,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny Whisper with the real one's interface: 80 log-mel bins over 30 s windows,
    a byte-level BPE tokenizer trained on ``texts`` followed by Whisper's special tokens, and a generation config
    with language/task ids (``multilingual``) or none (English-only, like the ``.en`` checkpoints).
    """
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    # The special tokens exist before the tokenizer class is built: Whisper's looks up its prefix tokens in __init__.
    output_dir = train_byte_level_bpe(texts, output_dir, vocab_size, added_tokens=whisper_special_tokens())
    tokenizer = _load_trained_tokenizer(output_dir, "WhisperTokenizer", model_max_length=max_target_positions)
    tokenizer.add_special_tokens({"additional_special_tokens": whisper_special_tokens()})
    tokenizer.pad_token = "<|endoftext|>"
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in whisper_special_tokens()}
    end, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    feature_extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLING_RATE, chunk_length=30)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=d_model * 4,
        decoder_ffn_dim=d_model * 4,
        max_source_positions=feature_extractor.nb_max_frames // 2,
        max_target_positions=max_target_positions,
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        decoder_start_token_id=start,
        suppress_tokens=[],
        begin_suppress_tokens=[tokenizer.convert_tokens_to_ids("Ġ"), end],
    )
    generation = GenerationConfig(
        decoder_start_token_id=start,
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        max_length=max_target_positions,
        begin_suppress_tokens=config.begin_suppress_tokens,
        suppress_tokens=[],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=multilingual,
    )
    if multilingual:
        generation.lang_to_id = {token: ids[token] for token in whisper_special_tokens()[2:-6]}
        generation.task_to_id = {"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]}
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation
    model.save_pretrained(output_dir)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(output_dir)
    feature_extractor.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
