#!/usr/bin/env python
"""Side by side with the reference: transformers' run_speech_recognition_ctc.py against ours, on the same corpus,
model and flags, one after the other.

    python scripts/benchmark_reference.py --work_dir /tmp/bench_ref \\
        --reference_python /path/to/env/bin/python --reference_script /path/to/run_speech_recognition_ctc.py
    # ~12 minutes on 2 cores at the default 20 epochs (7 of them the reference); --max_batch_duration 0 leaves out
    # the last run, --reference_tcmalloc adds one: the reference on the allocator ours uses; --repeats 3 runs
    # every row three times, interleaved, and prints medians and paired ratios; --static_shapes adds a row

The recipe is the CTC demo's (learning rate 2e-3, 50 warm-up steps, conv feature encoder trained, length-grouped
batches of 16, one loader worker) on 600 espeak digit strings, scored on 100 held-out ones.

Installs nothing: the reference runs in the Python environment you name (transformers 4.x, datasets 3.x, which
decodes audio without torchcodec, evaluate, jiwer, soundfile, librosa). No Hub is needed: the reference's
``evaluate.load("wer")`` finds a local ``wer`` module this script writes into the reference's working directory
(word error rate by jiwer, as evaluate's own module computes it). The model is named by a Hub id, served offline
from each run's own HF cache: given a local directory, the reference resumes "from" it and fails for want of a
trainer_state.json (a known bug of that script). Each run gets an empty HF cache otherwise, so the reference's
preprocessing cache does not carry over, and runs under /usr/bin/time for its peak RSS.

Prints one table: wall, train, start-up (wall minus train and evaluation), samples/s, padding (ours logs it; the
reference does not), peak RSS and held-out WER.

``--task seq2seq`` runs transformers' ``run_speech_recognition_seq2seq.py`` and ours on the real Whisper tiny.en
(the ``[test]`` extra's; served to the reference as ``openai/whisper-tiny.en``) and a real-speech corpus
(``--corpus``, built by ``scripts/build_real_corpus.py``: train / test / general splits):

    python scripts/benchmark_reference.py --task seq2seq --work_dir /tmp/bench_whisper --corpus data/real \
        --reference_python /tmp/ref-env/bin/python --reference_script /tmp/reference/run_speech_recognition_seq2seq.py

Rows: zero-shot; the reference; ours with the same flags; ours packed; ours with the recommended recipe
(``configs/seq2seq/demo_real_speech_whisper_tiny_en.json``). Training runs do not evaluate; every saved model is then
scored by the same evaluation (ours, eval-only) on the held-out ``test`` split and on the ``general`` split.
Columns: wall, train time, audio s/s, peak RSS, held-out and general normalised WER, evaluation time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

from asr_finetune.tools.benchmarking import TimedRun, markdown_table, run_timed
from asr_finetune.tools.ctranslate2_whisper import cached_bundled_whisper
from asr_finetune.tools.synthetic import make_corpus
from asr_finetune.tools.tiny_models import save_tiny_wav2vec2
from asr_finetune.training.allocator import find_tcmalloc

OURS = Path(__file__).resolve().parent / "run_speech_recognition_ctc.py"
OURS_SEQ2SEQ = Path(__file__).resolve().parent / "run_speech_recognition_seq2seq.py"
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "seq2seq" / "demo_real_speech_whisper_tiny_en.json"
MODEL_ID = "local/tiny-wav2vec2"
WHISPER_ID = "openai/whisper-tiny.en"
WER_MODULE = '''import datasets
import evaluate
import jiwer


class Wer(evaluate.Metric):
    def _info(self):
        features = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
        return evaluate.MetricInfo(description="word error rate (jiwer)", citation="", inputs_description="",
                                   features=features)

    def _compute(self, predictions=None, references=None):
        return jiwer.wer(list(references), list(predictions))
'''


def hub_cache(model: Path, cache: Path, model_id: str = MODEL_ID) -> None:
    """An empty HF cache holding ``model`` as the Hub repo ``model_id``, as a download would have left it."""
    shutil.rmtree(cache, ignore_errors=True)
    repo = cache / "hub" / f"models--{model_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(model, repo / "snapshots" / revision)


def timed(command: list[str], cwd: Path, cache: Path, extra_env: dict[str, str]) -> TimedRun:
    env = {**os.environ, "HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": "", **extra_env}
    return run_timed(command, env=env, cwd=cwd, name=" ".join(command[:2]))


def isolated_run(name: str, python: str, script: Path, flags: list[str], out: Path, work: Path, model: Path,
                 model_id: str = MODEL_ID, **extra_env: str) -> TimedRun:
    """One timed training run in a fresh working directory (holding the local ``wer`` module) with an HF cache of
    its own that serves ``model`` as ``model_id``; ``out`` starts empty."""
    shutil.rmtree(out, ignore_errors=True)
    cwd = work / "cwd" / re.sub(r"[^\w]+", "_", name)
    shutil.rmtree(cwd, ignore_errors=True)
    (cwd / "wer").mkdir(parents=True)
    (cwd / "wer" / "wer.py").write_text(WER_MODULE)
    cache = work / "cache" / cwd.name
    hub_cache(model, cache, model_id)
    return timed([python, str(script), *flags, "--output_dir", str(out)], cwd, cache, extra_env)


def run(name: str, python: str, script: Path, flags: list[str], out: Path, work: Path, **extra_env: str) -> dict:
    timing = isolated_run(name, python, script, flags, out, work, work / "model", **extra_env)
    wall, rss = timing.wall_s, timing.peak_rss_gb
    train = json.loads((out / "train_results.json").read_text())
    evaluation = json.loads((out / "eval_results.json").read_text())
    return {
        "run": name, "wall_s": round(wall, 1), "train_s": round(train["train_runtime"], 1),
        "startup_s": round(wall - train["train_runtime"] - evaluation["eval_runtime"], 1),
        "samples_per_s": round(train["train_samples_per_second"], 1),
        "padding": train.get("train_padding_fraction", "-"), "peak_rss_gb": round(rss, 2),
        "wer": round(evaluation["eval_wer"], 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("ctc", "seq2seq"), default="ctc")
    parser.add_argument("--work_dir", type=Path, required=True)
    parser.add_argument("--reference_python", required=True, help="python of an env with transformers 4.x")
    parser.add_argument("--reference_script", type=Path, required=True,
                        help="run_speech_recognition_ctc.py (--task seq2seq: run_speech_recognition_seq2seq.py)")
    parser.add_argument("--corpus", type=Path, help="seq2seq: a corpus of scripts/build_real_corpus.py")
    parser.add_argument("--reference_model", type=Path,
                        help="seq2seq: the same Whisper written by the reference's transformers 4.x (run "
                             "scripts/convert_ctranslate2_whisper.py --bundled in that environment): 4.x cannot "
                             "read the tokenizer files 5.x writes")
    parser.add_argument("--skip", nargs="*", default=[], help="seq2seq: rows to leave out (reference, same, packed, "
                        "recipe), for instance to rerun only ours")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num_clips", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_batch_duration", type=float, default=60.0, help="ours, last row; 0 leaves it out")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every row this many times, interleaved; the table shows medians, ratios are paired")
    parser.add_argument("--static_shapes", action="store_true",
                        help="add a run of ours with the duration budget and --static_shapes")
    parser.add_argument("--reference_tcmalloc", action="store_true",
                        help="also run the reference with tcmalloc preloaded, as ours runs (LD_PRELOAD)")
    args = parser.parse_args()
    if args.task == "seq2seq":
        seq2seq_main(args)
        return
    work = args.work_dir.resolve()
    corpus, model = work / "corpus", work / "model"
    if not (corpus / "test").exists():
        make_corpus(corpus, num_train=args.num_clips, num_validation=0, num_test=100, seed=5, progress=False)
    if not (model / "config.json").exists():
        save_tiny_wav2vec2(model, hidden_size=144, layers=4, conv_channels=64)
    flags = [
        "--model_name_or_path", MODEL_ID, "--dataset_name", str(corpus), "--train_split_name", "train",
        "--eval_split_name", "test", "--do_train", "--do_eval", "--num_train_epochs", str(args.epochs),
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", str(args.batch_size),
        "--learning_rate", "2e-3", "--warmup_steps", "50", "--freeze_feature_encoder", "false",
        "--dataloader_num_workers", "1", "--group_by_length", "--save_strategy", "no",
        "--eval_strategy", "no", "--logging_steps", "10", "--eval_metrics", "wer", "--seed", "0",
        "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    script = args.reference_script.resolve()
    runs = [("reference", args.reference_python, script, flags, {})]
    if args.reference_tcmalloc:
        library = find_tcmalloc()
        if library is None:
            sys.exit("--reference_tcmalloc: no tcmalloc on this machine (apt-get install libtcmalloc-minimal4).")
        runs.append(("reference + tcmalloc", args.reference_python, script, flags, {"LD_PRELOAD": library}))
    runs.append(("ours, same flags", sys.executable, OURS, flags, {}))
    if args.max_batch_duration:
        bucket = [f for f in flags if f != "--group_by_length"] + ["--max_batch_duration", str(args.max_batch_duration)]
        runs.append((f"ours, --max_batch_duration {args.max_batch_duration:g}", sys.executable, OURS, bucket, {}))
        if args.static_shapes:
            runs.append((f"ours, --max_batch_duration {args.max_batch_duration:g} --static_shapes", sys.executable,
                         OURS, [*bucket, "--static_shapes"], {}))
    results: dict[str, list[dict]] = {name: [] for name, *_ in runs}
    for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every row alike
        for name, python, script_path, run_flags, env in runs:
            out = work / "out" / re.sub(r"[^\w]+", "_", name)
            results[name].append(run(name, python, script_path, run_flags, out, work, **env))
    print(f"{args.num_clips} espeak clips, tiny wav2vec2 (hidden 144, 4 layers, conv 64), batch {args.batch_size}, "
          f"{args.epochs} epochs, --group_by_length; 100 held-out clips; "
          + (f"medians of {args.repeats} interleaved runs" if args.repeats > 1 else "one run each"))
    print(markdown_table([median_row(rows) for rows in results.values()]))
    for reference in (name for name in results if name.startswith("reference")):
        for name in (name for name in results if name.startswith("ours")):
            pairs = list(zip(results[name], results[reference], strict=True))
            print(f"{name} / {reference}: " + ", ".join(
                f"{label} {ratio_summary([row[key] / ref[key] for row, ref in pairs])}"
                for label, key in (("wall", "wall_s"), ("peak RSS", "peak_rss_gb"), ("samples/s", "samples_per_s"))
            ))


def median_row(rows: list[dict]) -> dict:
    """One row per run name: medians of the numbers, and every run's wall time when there are several."""
    row = {key: round(statistics.median(r[key] for r in rows), 3) if isinstance(value, int | float) else value
           for key, value in rows[0].items()}
    if len(rows) > 1:
        row["walls_s"] = " / ".join(f"{r['wall_s']:.0f}" for r in rows)
    return row


def ratio_summary(ratios: list[float]) -> str:
    """``0.52x`` for one pair of runs; ``0.52x (0.50-0.55)``, the median and range, for several."""
    text = f"{statistics.median(ratios):.2f}x"
    return text if len(ratios) == 1 else f"{text} ({min(ratios):.2f}-{max(ratios):.2f})"

# ---------------------------------------------------------------------------------------------- --task seq2seq


def split_seconds(corpus: Path, split: str) -> float:
    import soundfile

    return sum(soundfile.info(str(path)).duration for path in (corpus / split).glob("*.wav"))


def recipe_flags(path: Path) -> list[str]:
    """The training flags of a recipe config (model, data and output left to the benchmark)."""
    config = json.loads(path.read_text())
    skip = {"_recipe", "model_name_or_path", "dataset_name", "output_dir", "do_eval", "eval_strategy",
            "eval_split_name", "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
            "save_strategy", "save_steps", "save_total_limit", "report_to", "disable_tqdm"}  # fmt: skip
    flags: list[str] = []
    for key, value in config.items():
        if key not in skip:
            flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def score(model: Path, corpus: Path, split: str, out: Path) -> dict:
    """Our evaluation of a saved model on one split: normalised WER and seconds."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(OURS_SEQ2SEQ), "--model_name_or_path", str(model), "--dataset_name", str(corpus),
               "--eval_split_name", split, "--do_eval", "--predict_with_generate", "--per_device_eval_batch_size", "16",
               "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    timing = run_timed(command, name=f"scoring {model.name} on {split}")
    results = json.loads((out / "eval_results.json").read_text())
    return {"wer": round(results["eval_normalized_wer"], 3), "seconds": round(timing.wall_s, 1)}


def with_processor(trained: Path, base: Path) -> Path:
    """The reference saves only the feature extractor with the model: the tokenizer files come from the base."""
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                 "added_tokens.json", "normalizer.json", "preprocessor_config.json", "generation_config.json"):
        if (base / name).is_file() and not (trained / name).is_file():
            shutil.copy2(base / name, trained / name)
    return trained


def seq2seq_main(args: argparse.Namespace) -> None:
    work = args.work_dir.resolve()
    corpus = args.corpus.resolve() if args.corpus else work / "words"
    if args.corpus is None and not (corpus / "test").exists():
        make_corpus(corpus, num_train=400, num_validation=50, num_test=50, seed=0, kind="words", min_words=4,
                    max_words=8, progress=False)  # fmt: skip
    model = cached_bundled_whisper()
    train_audio = split_seconds(corpus, "train")
    general = (corpus / "general").is_dir()
    same = ["--model_name_or_path", WHISPER_ID, "--dataset_name", str(corpus), "--train_split_name", "train",
            "--do_train", "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--learning_rate", "1e-5",
            "--seed", "0", "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "5",
            "--freeze_feature_encoder", "false", "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    recipe = [] if "recipe" in args.skip else [
        "--model_name_or_path", WHISPER_ID, "--dataset_name", str(corpus), "--train_split_name", "train",
        "--do_train", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", *recipe_flags(RECIPE)]
    reference_model = args.reference_model.resolve() if args.reference_model else model
    runs = [("reference", args.reference_python, args.reference_script.resolve(), same, 1),
            ("ours, same flags", sys.executable, OURS_SEQ2SEQ, same, 1),
            ("ours, --pack_utterances", sys.executable, OURS_SEQ2SEQ, [*same, "--pack_utterances"], 1),
            ("ours, recommended recipe", sys.executable, OURS_SEQ2SEQ, recipe,
             json.loads(RECIPE.read_text()).get("num_train_epochs", 1) if recipe else 1)]  # fmt: skip
    keys = {"reference": "reference", "ours, same flags": "same", "ours, --pack_utterances": "packed",
            "ours, recommended recipe": "recipe"}  # fmt: skip
    rows = [{"run": "zero-shot", "wall_s": "-", "train_s": "-", "audio_s_per_s": "-", "peak_rss_gb": "-",
             **scores(model, corpus, work / "score" / "zero_shot", general)}]  # fmt: skip
    for name, python, script, flags, epochs in runs:
        if keys[name] in args.skip:
            continue
        slug = re.sub(r"[^\w]+", "_", name)
        out, base = work / "out" / slug, reference_model if name == "reference" else model
        timing = isolated_run(name, python, script, flags, out, work, base, WHISPER_ID)
        train = json.loads((out / "train_results.json").read_text())
        rows.append({"run": name, "wall_s": round(timing.wall_s, 1), "train_s": round(train["train_runtime"], 1),
                     "audio_s_per_s": round(train_audio * float(epochs) / train["train_runtime"], 2),
                     "peak_rss_gb": round(timing.peak_rss_gb, 2),
                     **scores(with_processor(out, base), corpus, work / "score" / slug, general)})  # fmt: skip
        print(markdown_table(rows[-1:]), flush=True)
    print(f"Whisper tiny.en; {corpus}: train {train_audio / 60:.1f} min; normalised WER; one run each")
    print(markdown_table(rows))


def scores(model: Path, corpus: Path, out: Path, general: bool) -> dict:
    held_out = score(model, corpus, "test", out / "test")
    row = {"held_out_wer": held_out["wer"], "eval_s": held_out["seconds"]}
    row["general_wer"] = score(model, corpus, "general", out / "general")["wer"] if general else "-"
    return row


if __name__ == "__main__":
    main()
