"""Serving engines for ``asr-transcribe --engine``: a CTranslate2 Whisper and an ONNX Runtime CTC model, exported by
``asr-export`` (:mod:`asr_finetune.models.exports`). Each has the interface of
:class:`asr_finetune.evaluation.transcription.Transcriber` (``sampling_rate``, ``read``, call) and decodes as the
transformers engine does: greedy Whisper with the same token cap by duration; CTC argmax, or beam search with the
n-gram LM the export carries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from asr_finetune.data.audio import load_audio
from asr_finetune.errors import UsageError
from asr_finetune.evaluation.decoding import token_cap
from asr_finetune.evaluation.lm_decoding import load_processor
from asr_finetune.evaluation.longform import Timed, Transcript, ctc_transcript
from asr_finetune.models.exports import ONNX_FILE, require

WHISPER_WINDOW_S = 30.0
WHISPER_MAX_TOKENS = 448


class CTranslate2Whisper:
    """Whisper exported with ``asr-export --to ctranslate2`` (the model faster-whisper loads): one 30 s window a
    clip, greedy unless ``num_beams`` (or the saved generation config) says otherwise."""

    def __init__(self, model: str, num_beams: int | None = None) -> None:
        ctranslate2 = require("ctranslate2", "--engine ctranslate2")
        from transformers import WhisperProcessor

        if not (Path(model) / "model.bin").is_file():
            raise UsageError(f"--engine ctranslate2 --model {model}: no model.bin there. Export a Whisper output dir "
                             "first: asr-export --to ctranslate2 --model DIR --output_dir EXPORT.")  # fmt: skip
        self.processor = WhisperProcessor.from_pretrained(model)
        self.sampling_rate = self.processor.feature_extractor.sampling_rate
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.model = ctranslate2.models.Whisper(model, device="cpu", compute_type="default", intra_threads=threads)
        self.storage = ctranslate2.StorageView
        generation = _generation_config(model)
        self.num_beams = num_beams or generation.get("num_beams") or 1
        self.language = generation.get("language")
        self.task = generation.get("task") or "transcribe"

    def read(self, path: str) -> np.ndarray:
        return load_audio(path, self.sampling_rate)

    def prompt(self, features: Any) -> list[str]:
        """Start of transcript, then (multilingual models) language and task, then no timestamps."""
        tokens = ["<|startoftranscript|>"]
        if self.model.is_multilingual:
            language = self.language or self.model.detect_language(features)[0][0][0].strip("<|>")
            tokens += [f"<|{language.strip('<|>')}|>", f"<|{self.task}|>"]
        return tokens + ["<|notimestamps|>"]

    def __call__(self, samples: np.ndarray, timed: bool) -> Transcript:
        duration = len(samples) / self.sampling_rate
        if duration > WHISPER_WINDOW_S:
            raise ValueError(f"{duration:.0f} s is longer than Whisper's {WHISPER_WINDOW_S:.0f} s window; the "
                             "ctranslate2 engine decodes one window: use --engine transformers for long recordings")
        features = self.processor.feature_extractor(samples, sampling_rate=self.sampling_rate, return_tensors="np")
        features = self.storage.from_array(np.ascontiguousarray(features.input_features, dtype=np.float32))
        prompt = self.prompt(features)
        result = self.model.generate(features, [prompt], beam_size=self.num_beams,
                                     max_length=min(WHISPER_MAX_TOKENS, len(prompt) + token_cap(duration)))
        text = self.processor.tokenizer.decode(result[0].sequences_ids[0], skip_special_tokens=True).strip()
        return Transcript(text, [Timed(0.0, round(duration, 3), text)] if text else [])


class OnnxCTC:
    """A CTC model exported with ``asr-export --to onnx``, run by ONNX Runtime on one clip at a time."""

    def __init__(self, model: str) -> None:
        onnxruntime = require("onnxruntime", "--engine onnx")
        from transformers import AutoConfig

        if not (Path(model) / ONNX_FILE).is_file():
            raise UsageError(f"--engine onnx --model {model}: no {ONNX_FILE} there. Export a CTC output dir first: "
                             "asr-export --to onnx --model DIR --output_dir EXPORT.")  # fmt: skip
        try:
            self.session = onnxruntime.InferenceSession(str(Path(model) / ONNX_FILE),
                                                        providers=["CPUExecutionProvider"])  # fmt: skip
        except Exception as err:  # a cut or corrupt file
            raise UsageError(f"{Path(model) / ONNX_FILE} cannot be loaded by ONNX Runtime: "
                             f"{str(err).splitlines()[0][:200]}. Export it again with asr-export.") from None
        self.processor = load_processor(model)
        self.feature_extractor = self.processor.feature_extractor
        self.sampling_rate = self.feature_extractor.sampling_rate
        config = AutoConfig.from_pretrained(model)
        ratio = getattr(config, "inputs_to_logits_ratio", None) or int(np.prod(config.conv_stride))
        self.seconds_per_frame = ratio / self.sampling_rate

    def read(self, path: str) -> np.ndarray:
        return load_audio(path, self.sampling_rate)

    def __call__(self, samples: np.ndarray, timed: bool) -> Transcript:
        values = self.feature_extractor(samples, sampling_rate=self.sampling_rate, return_tensors="np").input_values
        values = np.ascontiguousarray(values, dtype=np.float32)
        try:
            logits = self.session.run(None, {"input_values": values,
                                             "attention_mask": np.ones(values.shape, np.int64)})  # fmt: skip
        except Exception as err:  # onnxruntime's errors are not RuntimeErrors: one clip must not end the run
            raise RuntimeError(str(err).splitlines()[0][:300]) from err
        decoder = getattr(self.processor, "decoder", None)
        frames = logits[0][0] if decoder is not None else logits[0][0].argmax(-1)
        return ctc_transcript(frames, self.processor.tokenizer, self.seconds_per_frame,
                              round(len(samples) / self.sampling_rate, 3), decoder)  # fmt: skip


def _generation_config(model: str) -> dict[str, Any]:
    path = Path(model) / "generation_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
