#!/usr/bin/env python
"""torch.compile with and without --static_shapes: compile time, steady step time and padding, per training step.

    python scripts/benchmark_compile.py --work_dir /tmp/bench_ref [--epochs 2] [--max_batch_duration 60]

Trains the benchmark's tiny wav2vec2 (hidden 144, 4 layers, conv 64; CTC head of 32) on the espeak corpus of
``scripts/benchmark_reference.py`` (made there if missing): the clips' real audio, in the batches the training
scripts draw (``DurationBatchSampler`` with the duration budget, padded by ``CTCCollator``), with random labels,
since only shapes matter here. Four runs, one after the other, each from the same weights: eager and compiled, each
with the usual buckets (batch lengths differ from batch to batch, and from epoch to epoch) and with static shapes
(each bucket's batches padded to its longest clip). The compiled runs use what ``--torch_compile`` does
(``torch.compile`` with dynamo's defaults), and for static shapes what ``--static_shapes`` adds to it
(``backends.compile_per_shape`` and ``backends.mark_static``).

Prints one table: distinct batch shapes, steps, total time, the median step, compile overhead (the total minus
steps x the median step), padding and audio seconds per second. Each invocation compiles into a fresh, empty
inductor cache (``TORCHINDUCTOR_CACHE_DIR``), so its compile times are a first run's; run the compiled runs in
separate invocations (``--runs compiled``, ``--runs compiled_static``) for a cold cache each.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import soundfile
import torch

from asr_finetune.data.collators import CTCCollator, static_collator
from asr_finetune.data.sampling import DurationBatchSampler
from asr_finetune.models.feature_encoder import speed_up_feature_encoders
from asr_finetune.tools.benchmarking import markdown_table
from asr_finetune.tools.synthetic import make_corpus
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2, wav2vec2_feature_extractor
from asr_finetune.training.trainers import compile_per_shape, mark_static


def load_clips(corpus: Path) -> list[dict]:
    """The train split's clips as the collator takes them, with random labels of a length speech would have."""
    generator = torch.Generator().manual_seed(0)
    clips = []
    for line in (corpus / "train" / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        audio, _ = soundfile.read(corpus / "train" / row["file_name"], dtype="float32")
        seconds = len(audio) / 16000
        labels = torch.randint(1, 32, (max(1, int(seconds * 5)),), generator=generator).tolist()
        clips.append({"input_values": audio, "labels": labels, "seconds": seconds, "id": row["file_name"]})
    return clips


def train(model: torch.nn.Module, clips: list[dict], budget: float, epochs: int, static: bool,
          compiled: bool) -> dict:
    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = 8
    sampler = DurationBatchSampler([clip["seconds"] for clip in clips], max_batch_duration=budget, static=static)
    collator = static_collator(CTCCollator(wav2vec2_feature_extractor()), sampler)
    model = copy.deepcopy(model).train()
    speed_up_feature_encoders(model, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    if compiled and static:
        compile_per_shape(sampler.num_buckets)
    forward = torch.compile(model) if compiled else model
    seen, steps_s, audio, padded = set(), [], 0.0, 0.0
    start = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for indices in sampler:
            batch = collator([clips[i] for i in indices])
            audio += float(batch.pop("audio_seconds"))
            padded += float(batch.pop("padded_seconds"))
            inputs = {key: batch[key] for key in ("input_values", "attention_mask", "labels")}
            if compiled and static:
                mark_static(inputs)
            shape = tuple(inputs["input_values"].shape)
            began = time.perf_counter()
            forward(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps_s.append(time.perf_counter() - began)
            seen.add(shape)
    total = time.perf_counter() - start
    steps = len(sampler) * epochs
    step = statistics.median(steps_s)  # the steps that compile are outliers, as long as they are under half
    return {
        "run": f"{'compiled' if compiled else 'eager'}, {'static shapes' if static else 'buckets'}",
        "shapes": len(seen), "steps": steps, "total_s": round(total, 1), "median_step_s": round(step, 3),
        "compile_overhead_s": round(total - steps * step, 1) if compiled else "-",
        "padding": round(1 - audio / padded, 3), "audio_s_per_s": round(audio / total, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max_batch_duration", type=float, default=60.0)
    parser.add_argument("--runs", default="eager,eager_static,compiled,compiled_static",
                        help="comma-separated subset of the four runs")
    args = parser.parse_args()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # compile from scratch
    work = args.work_dir.resolve()
    corpus, model_dir = work / "corpus", work / "model"
    if not (corpus / "test").exists():
        make_corpus(corpus, num_train=600, num_validation=0, num_test=100, seed=5, progress=False)
    if not (model_dir / "config.json").exists():
        save_tiny_wav2vec2(model_dir, hidden_size=144, layers=4, conv_channels=64)
    from transformers import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(model_dir, vocab_size=32, pad_token_id=0, ctc_loss_reduction="mean")
    clips = load_clips(corpus)
    table = []
    for run in args.runs.split(","):
        table.append(train(model, clips, args.max_batch_duration, args.epochs, static="static" in run,
                           compiled=run.startswith("compiled")))
        print(json.dumps(table[-1]), flush=True)  # each run as it ends: compiling on a CPU takes minutes
    print(f"{len(clips)} espeak clips, tiny wav2vec2, batches of <= {args.max_batch_duration:g} s padded, "
          f"{args.epochs} epoch(s), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(markdown_table(table))


if __name__ == "__main__":
    main()
