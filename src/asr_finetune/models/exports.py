"""Exports for serving: Whisper to CTranslate2 (the format faster-whisper loads), CTC models to ONNX.

Each export is a folder written whole (or not at all) with the processor files beside the model, so
``asr-transcribe --engine ctranslate2|onnx --model EXPORT`` (:mod:`asr_finetune.evaluation.engines`) needs nothing
else. ``pip install 'asr-finetune[export]'`` installs ctranslate2, onnx and onnxruntime.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from asr_finetune.errors import UsageError, require_module
from asr_finetune.files import atomic_dir, refuse_to_replace
from asr_finetune.models.loading import dtype_kwargs, refuse_training_only_checkpoint

logger = logging.getLogger(__name__)

EXPORT_HINT = "pip install 'asr-finetune[export]'"
FORMATS = ("ctranslate2", "onnx")
ONNX_FILE = "model.onnx"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
                   "vocab.json", "merges.txt", "normalizer.json", "added_tokens.json", "special_tokens_map.json",
                   "generation_config.json", "config.json", "alphabet.json")  # fmt: skip


def require(module: str, purpose: str) -> Any:
    """Import an optional export/serving package or refuse in one line naming the extra."""
    return require_module(module, purpose, EXPORT_HINT)


def model_kind(model_dir: str | Path) -> str:
    """"whisper", "ctc" or another model type, from the model's config."""
    from transformers import AutoConfig

    refuse_training_only_checkpoint(str(model_dir))
    try:
        config = AutoConfig.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        raise UsageError(f"--model {model_dir}: not a model directory ({str(err).splitlines()[0][:160]}).") from None
    if config.model_type == "whisper":
        return "whisper"
    architectures = config.architectures or []
    return "ctc" if any(name.endswith("ForCTC") for name in architectures) else config.model_type


def export_model(model_dir: str | Path, to: str, output_dir: str | Path, quantization: str | None = None) -> Path:
    """Export ``model_dir`` (an output dir of a fine-tuning run, or a model folder) to ``output_dir``."""
    if Path(output_dir).resolve() in (Path(model_dir).resolve(), *Path(model_dir).resolve().parents):
        raise UsageError(f"--output_dir {output_dir} is (or holds) --model {model_dir}: give the export a folder "
                         "of its own.")
    refuse_to_replace(output_dir, ("model.bin", ONNX_FILE), "an export")
    kind = model_kind(model_dir)
    if to == "ctranslate2":
        if kind != "whisper":
            raise UsageError(f"--to ctranslate2 exports Whisper models; {model_dir} is {kind}. CTC models: --to onnx.")
        return export_ctranslate2(model_dir, output_dir, quantization or "float32")
    if to == "onnx":
        if kind != "ctc":
            raise UsageError(f"--to onnx exports CTC models; {model_dir} is {kind}. Whisper: --to ctranslate2.")
        if quantization:
            raise UsageError("--quantization applies to --to ctranslate2 only.")
        return export_onnx(model_dir, output_dir)
    raise UsageError(f"--to {to}: one of {', '.join(FORMATS)}.")


def export_ctranslate2(model_dir: str | Path, output_dir: str | Path, quantization: str = "float32") -> Path:
    """Whisper as a CTranslate2 model (``model.bin``) with its tokenizer and feature extractor files."""
    require("ctranslate2", "--to ctranslate2")
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_model(self, model_class: Any, model_name_or_path: str, **kwargs: Any) -> Any:
            # ctranslate2 4.8 passes ``dtype``, which transformers before 4.56 (the Gaudi stack) calls torch_dtype
            if "dtype" in kwargs:
                kwargs.update(dtype_kwargs(kwargs.pop("dtype")))
            return super().load_model(model_class, model_name_or_path, **kwargs)

    with atomic_dir(output_dir) as staging:
        target = staging / "model"
        try:
            Converter(str(model_dir)).convert(str(target), quantization=quantization)
        except ValueError as err:  # e.g. an unknown --quantization
            raise UsageError(f"--to ctranslate2: {err}") from None
        for path in target.iterdir():
            path.rename(staging / path.name)
        target.rmdir()
        copy_processor_files(model_dir, staging, keep=("config.json", "vocabulary.json"))
    logger.info("CTranslate2 Whisper (%s) in %s: asr-transcribe --engine ctranslate2 --model %s", quantization,
                output_dir, output_dir)  # fmt: skip
    return Path(output_dir)


def export_onnx(model_dir: str | Path, output_dir: str | Path, opset: int = 17) -> Path:
    """A CTC model as ONNX (inputs ``input_values`` and ``attention_mask``, output ``logits``; batch and length
    dynamic) with its processor files, including an n-gram LM the output dir carries."""
    require("onnx", "--to onnx")
    import torch
    from transformers import AutoModelForCTC

    model = AutoModelForCTC.from_pretrained(str(model_dir), **dtype_kwargs(torch.float32)).eval()
    samples = torch.zeros(1, 16_000)
    mask = torch.ones(1, 16_000, dtype=torch.long)
    with atomic_dir(output_dir) as staging:
        torch.onnx.export(
            model, (samples, mask), str(staging / ONNX_FILE), input_names=["input_values", "attention_mask"],
            output_names=["logits"], opset_version=opset, dynamo=False,
            dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "attention_mask": {0: "batch", 1: "samples"},
                          "logits": {0: "batch", 1: "frames"}},
        )  # fmt: skip
        copy_processor_files(model_dir, staging)
        if (Path(model_dir) / "language_model").is_dir():
            shutil.copytree(Path(model_dir) / "language_model", staging / "language_model")
    logger.info("ONNX CTC model in %s: asr-transcribe --engine onnx --model %s", output_dir, output_dir)
    return Path(output_dir)


def copy_processor_files(model_dir: str | Path, target: Path, keep: tuple[str, ...] = ()) -> None:
    """The tokenizer/feature-extractor/config files of ``model_dir`` beside the export (``keep``: the export's own
    files of the same name, left as they are)."""
    for name in PROCESSOR_FILES:
        source = Path(model_dir) / name
        if source.is_file() and name not in keep:
            shutil.copy2(source, target / name)
