"""The model card (``README.md`` in output_dir) a Hub user expects: metadata the Hub reads (``base_model``,
``datasets``, ``metrics``, ``model-index`` with the evaluated WER), the hyper-parameters, the training-loss table,
which checkpoint was kept, and the command that made it.

Nothing in it depends on the clock or the machine's speed, so a rerun of a finished command writes it unchanged.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asr_finetune.files import atomic_write_text
from asr_finetune.training.outputs import command_line

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
RUNTIME_KEYS = ("_runtime", "_samples_per_second", "_steps_per_second")
"""Metric name endings that measure the machine, not the model: left off the card."""
LOSS_TABLE_ROWS = 40
"""At most this many rows in the training-loss table (evenly spaced over the run, the last row always kept)."""
EVAL_COLUMNS = {"eval_loss": "validation loss", "eval_wer": "wer", "eval_normalized_wer": "normalized wer"}


def hub_id(name: str | None) -> str | None:
    """``name`` if it reads as a Hub repository id (``owner/name`` or ``name``) and is not a local path."""
    if not name or Path(name).expanduser().exists() or not HUB_ID.match(name):
        return None
    return name


def _yaml(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON scalar or list is valid YAML


def front_matter(
    *, base_model: str | None, dataset: str | None, dataset_config: str | None, eval_split: str | None,
    metrics: dict[str, Any], name: str, language: str | None = None, tags: Sequence[str] = (),
) -> list[str]:
    """YAML the Hub indexes. ``model-index`` lists each evaluated metric (WER, CER, normalised forms) with the
    dataset and split it was measured on; ``base_model`` and ``datasets`` only when they are Hub ids."""
    lines = ["---", "library_name: transformers", "pipeline_tag: automatic-speech-recognition",
             f"tags: {_yaml(['asr-finetune', *tags])}"]  # fmt: skip
    base, data = hub_id(base_model), hub_id(dataset)
    if base:
        lines.append(f"base_model: {_yaml(base)}")
    if data:
        lines.append(f"datasets: [{_yaml(data)}]")
    if language:
        lines.append(f"language: [{_yaml(language)}]")
    scored = {key.removeprefix("eval_"): value for key, value in metrics.items()
              if isinstance(value, (int, float)) and re.search(r"(^|_)(wer|cer)$", key)}  # fmt: skip
    if scored:
        lines.append(f"metrics: {_yaml(sorted({key.rsplit('_', 1)[-1] for key in scored}))}")
        local = Path(dataset).name if dataset else "evaluation data"  # never a local path: it may name a user
        dataset_fields = {"name": data or local, "type": data or local}
        if dataset_config:
            dataset_fields["config"] = dataset_config
        if eval_split:
            dataset_fields["split"] = eval_split
        lines += ["model-index:", f"- name: {_yaml(name)}", "  results:",
                  "  - task: {type: automatic-speech-recognition, name: Automatic Speech Recognition}",
                  f"    dataset: {{{', '.join(f'{k}: {_yaml(v)}' for k, v in dataset_fields.items())}}}",
                  "    metrics:"]  # fmt: skip
        for key, value in scored.items():
            kind, label = key.rsplit("_", 1)[-1], _yaml(key.replace("_", " "))
            lines.append(f"    - {{type: {kind}, value: {round(float(value), 6)}, name: {label}}}")
    return [*lines, "---"]


def hyperparameters(args: Any, world_size: int) -> dict[str, Any]:
    """The training arguments that define the run, as the Hub's cards list them."""
    per_device = args.per_device_train_batch_size
    table = {
        "learning_rate": args.learning_rate,
        "train_batch_size (per device)": per_device,
        "eval_batch_size (per device)": args.per_device_eval_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "processes": world_size,
        "total_train_batch_size": per_device * args.gradient_accumulation_steps * world_size,
        "optimizer": str(getattr(args.optim, "value", args.optim)),
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup": f"{args.warmup_steps} steps" if args.warmup_steps else f"ratio {getattr(args, 'warmup_ratio', 0)}",
        "training length": f"{args.max_steps} steps" if args.max_steps > 0 else f"{args.num_train_epochs} epochs",
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "precision": "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32",
    }
    return table


def loss_rows(log_history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per logged step: training loss, and the evaluation's loss and WER where one ran at that step."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        row = rows.setdefault(int(step), {"step": int(step), "epoch": entry.get("epoch")})
        if "loss" in entry:
            row["training loss"] = entry["loss"]
        for key, column in EVAL_COLUMNS.items():
            if key in entry:
                row[column] = entry[key]
    ordered = [rows[step] for step in sorted(rows) if len(rows[step]) > 2]
    if len(ordered) > LOSS_TABLE_ROWS:
        every = len(ordered) / LOSS_TABLE_ROWS
        ordered = [ordered[int(i * every)] for i in range(LOSS_TABLE_ROWS - 1)] + [ordered[-1]]
    return ordered


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    return "" if value is None else str(value)


def table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """A markdown table over the union of the rows' keys (in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return lines + ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]


def log_history_of(state: Any, output_dir: str | Path) -> list[dict[str, Any]]:
    """The run's logged history: the trainer's, or (an evaluation-only run) the one saved in output_dir."""
    history = list(getattr(state, "log_history", None) or [])
    if history:
        return history
    try:
        return json.loads((Path(output_dir) / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    except (OSError, ValueError, KeyError):
        return []


def best_checkpoint_line(state: Any, metric: str | None) -> str:
    best = getattr(state, "best_model_checkpoint", None)
    if not best or not metric:
        return "The final model is the last step's (no best checkpoint was tracked)."
    value = getattr(state, "best_metric", None)
    shown = f" ({metric} {value:.4f})" if isinstance(value, (int, float)) else ""
    return f"Best checkpoint by {metric}: `{Path(best).name}`{shown}."


def write_model_card(
    output_dir: str | Path,
    *,
    title: str,
    details: dict[str, Any],
    metrics: dict[str, Any],
    meta: dict[str, Any],
    hyper: dict[str, Any] | None = None,
    log_history: Sequence[dict[str, Any]] = (),
    best: str | None = None,
    argv: Sequence[str] | None = None,
    script: str | None = None,
    pipeline_kwargs: str = "",
) -> None:
    """Write ``README.md``: front matter (``meta``: the keywords of :func:`front_matter` but ``metrics`` and
    ``name``), what was trained on what, results, hyper-parameters, the training-loss table, use (``pipeline_kwargs``:
    what the pipeline call needs to decode as evaluation did), and command."""
    lines = front_matter(metrics=metrics, name=Path(output_dir).resolve().name, **meta)
    lines += [f"# {title}", "", "Fine-tuned with asr-finetune.", "", "## Training", ""]
    lines += [f"- **{key}**: {value}" for key, value in details.items()]
    lines += ["", "## Results", ""]
    lines += table([{"metric": key, "value": value} for key, value in metrics.items()]) if metrics else [
        "Not evaluated (no --do_eval)."]
    if best:
        lines += ["", best]
    if hyper:
        lines += ["", "## Hyper-parameters", ""]
        lines += table([{"hyper-parameter": key, "value": str(value)} for key, value in hyper.items()])
    rows = loss_rows(log_history)
    if rows:
        lines += ["", "## Training loss", ""] + table(rows)
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import pipeline",
        f'asr = pipeline("automatic-speech-recognition", model="{Path(output_dir).name}")',
        f'print(asr("clip.wav"{pipeline_kwargs})["text"])',
        "```",
        "",
        "## Command",
        "",
        "```",
        command_line(argv, script),
        "```",
        "",
        f"Python {platform.python_version()}.",
        "",
    ]
    atomic_write_text(Path(output_dir) / "README.md", "\n".join(lines))
