"""The CTC task's last step with ``--lm_path`` / ``--lm_order``: build the n-gram (once), decode the eval split with
it next to greedy decoding (``eval_wer`` and ``eval_wer_lm`` side by side, with seconds per clip for each), tune
alpha/beta if asked, and publish a ``Wav2Vec2ProcessorWithLM`` with the model so ``pipeline()`` and
``asr-transcribe`` decode with the LM.

Beam search scores the model's raw logits of each clip's own frames, as transformers' pipeline does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_finetune.evaluation.lm_decoding import (
    LanguageModelArguments,
    make_decoder,
    processor_with_lm,
    save_processor_with_lm,
    timed_decode,
    tune_weights,
)
from asr_finetune.evaluation.ngram_lm import BINARY, build_ngram_lm
from asr_finetune.files import write_json, write_jsonl
from asr_finetune.models.loading import output_frames
from asr_finetune.training.outputs import disk_errors, publish_files
from asr_finetune.training.train_and_evaluate import PREDICTIONS_FILE, in_dataset_order

logger = logging.getLogger(__name__)

LM_STAGING = ".partial-lm"
SOURCE_FILE = "source.json"
LM_SOURCE_DIR = "language_model_source"
"""Where ``--lm_order`` writes the n-gram it builds (lm.arpa, lm.bin, unigrams.txt) in the output dir."""


def lm_path_of(lm_args: LanguageModelArguments, output_dir: str | Path) -> Path:
    return Path(lm_args.lm_path) if lm_args.lm_path else Path(output_dir) / LM_SOURCE_DIR


def build_lm_if_asked(lm_args: LanguageModelArguments, train_texts: Any, output_dir: str, is_main: bool) -> None:
    """``--lm_order N``: the N-gram of the training transcripts (as normalised for training), built once by the main
    process before training (a rerun reuses it), so a missing tool or bad text fails before hours of training."""
    if not lm_args.lm_order or not is_main:
        return
    target = Path(output_dir) / LM_SOURCE_DIR
    texts = list(train_texts)
    key = {"order": lm_args.lm_order, "text_sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    recorded = target / SOURCE_FILE
    if (target / BINARY).is_file() and recorded.is_file() and json.loads(recorded.read_text(encoding="utf-8")) == key:
        logger.info("Reusing the %d-gram LM of these transcripts in %s.", lm_args.lm_order, target)
        return
    build_ngram_lm(texts, lm_args.lm_order, target)
    write_json(key, recorded)


def decode_with_lm(
    lm_args: LanguageModelArguments, trainer: Any, metrics: Any, tokenizer: Any, feature_extractor: Any,
    evaluated: bool,
) -> dict[str, Any]:
    """Evaluate with the LM (when the run evaluated; every process decodes its share of the clips) and publish the
    processor with the LM (main process). Returns the ``eval_*_lm`` figures added to eval_results.json."""
    if not lm_args.enabled:
        return {}
    output_dir = Path(trainer.args.output_dir)
    decoder = make_decoder(tokenizer, lm_path_of(lm_args, output_dir), lm_args.lm_alpha, lm_args.lm_beta)
    results = evaluate_with_lm(lm_args, trainer, metrics, tokenizer, decoder) if evaluated else {}
    if not trainer.is_world_process_zero():
        return results
    processor = processor_with_lm(feature_extractor, tokenizer, decoder)
    staging = output_dir / LM_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    with disk_errors(output_dir):
        save_processor_with_lm(processor, staging)
        # pyctcdecode loads language_model/ only when it holds exactly its own files: an earlier LM's go first
        shutil.rmtree(output_dir / "language_model", ignore_errors=True)
        publish_files(staging, output_dir)
    logger.info("Saved a Wav2Vec2ProcessorWithLM (alpha %s, beta %s): pipeline() and asr-transcribe on %s decode "
                "with the LM.", results.get("eval_lm_alpha", lm_args.lm_alpha),
                results.get("eval_lm_beta", lm_args.lm_beta), output_dir)  # fmt: skip
    return results


def evaluate_with_lm(
    lm_args: LanguageModelArguments, trainer: Any, metrics: Any, tokenizer: Any, decoder: Any
) -> dict[str, Any]:
    """Greedy and LM decoding of the same logits, scored by the same metrics; the main process updates
    eval_results.json, all_results.json and eval_predictions.jsonl (``hypothesis_lm``). Each process decodes every
    ``world_size``-th clip, so a long beam search (or ``--lm_tune``'s grid) is shared and no process idles at the
    final barrier. Leaves the decoder with the weights it reports."""
    dataset, args = trainer.eval_dataset, trainer.args
    indices = list(range(args.process_index, len(dataset), args.world_size))
    logits = clip_logits(trainer, dataset, indices)
    start = time.perf_counter()
    greedy = [tokenizer.decode(clip.argmax(-1)).strip() for clip in logits]
    greedy_seconds = (time.perf_counter() - start) / max(len(logits), 1)

    def decode_all(width: int) -> tuple[list[str], float]:
        texts, seconds = timed_decode(decoder, logits, width)
        return in_order(texts, indices, args.world_size), seconds

    key = "normalized_wer" if metrics.eval_normalizer is not None else "wer"
    alpha, beta, results = lm_args.lm_alpha, lm_args.lm_beta, {}
    if lm_args.lm_tune:
        alpha, beta, results["eval_lm_grid"] = tune_weights(
            decoder, lambda width: decode_all(width)[0], lambda texts: metrics.score(texts)[key], lm_args.lm_beam_width
        )
    hypotheses, lm_seconds = decode_all(lm_args.lm_beam_width)
    results.update({f"eval_{name}_lm": value for name, value in metrics.score(hypotheses).items()})
    results.update({
        "eval_lm_alpha": alpha, "eval_lm_beta": beta, "eval_lm_beam_width": lm_args.lm_beam_width,
        "eval_lm_seconds_per_clip": round(lm_seconds, 5), "eval_greedy_seconds_per_clip": round(greedy_seconds, 5),
    })
    greedy = in_order(greedy, indices, args.world_size)
    if not trainer.is_world_process_zero():
        return results
    logger.info("Eval %s with the LM: %.4f (beam %d, alpha %s, beta %s), %.1f ms a clip; greedy %.4f, %.2f ms a clip.",
                key, results[f"eval_{key}_lm"], lm_args.lm_beam_width, alpha, beta, lm_seconds * 1e3,
                metrics.score(greedy)[key], greedy_seconds * 1e3)  # fmt: skip
    output_dir = Path(args.output_dir)
    with disk_errors(output_dir):
        for name in ("eval_results.json", "all_results.json"):
            path = output_dir / name
            content = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            write_json({**content, **results}, path)
        add_lm_hypotheses(output_dir / PREDICTIONS_FILE, dataset, hypotheses)
    return results


def in_order(texts: list[str], indices: list[int], world_size: int) -> list[str]:
    """Every process's ``texts`` (clips ``indices`` of the evaluation) gathered, in evaluation order."""
    pairs = list(zip(indices, texts, strict=True))
    if world_size > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)
    return [text for _, text in sorted(pairs)]


def clip_logits(trainer: Any, dataset: Any, indices: list[int]) -> list[np.ndarray]:
    """The logits (frames x vocab, float32) of clips ``indices``, their padding cut off; computed with the
    Trainer's own evaluation step (long clips in chunks)."""
    model = trainer.model
    rate = getattr(getattr(trainer.processing_class, "feature_extractor", None), "sampling_rate", 16_000)
    durations = dataset.rows["duration"]
    frames = output_frames(model, [round(durations[index] * rate) for index in indices])
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices),
                                         batch_size=trainer.args.per_device_eval_batch_size,
                                         collate_fn=trainer.data_collator, shuffle=False)  # fmt: skip
    clips: list[np.ndarray] = []
    model.eval()
    for batch in loader:
        batch.pop("labels", None)
        _, logits, _ = trainer.prediction_step(model, batch, prediction_loss_only=False)
        for row in logits.float().cpu().numpy():
            clips.append(row[: frames[len(clips)]])
    return clips


def add_lm_hypotheses(path: Path, dataset: Any, hypotheses: list[str]) -> None:
    """Add ``hypothesis_lm`` to each row of eval_predictions.jsonl (``hypotheses``: in evaluation order, longest
    first; the file: in the dataset's order)."""
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ordered = in_dataset_order([{"hypothesis_lm": text} for text in hypotheses], dataset)
    write_jsonl([{**row, **extra} for row, extra in zip(rows, ordered, strict=True)], path)
