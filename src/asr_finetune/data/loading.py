"""Load splits from the Hub, a local audiofolder, or a CSV / JSON / JSONL manifest, and check them.

Every loader ends in the same shape: a ``datasets.Dataset`` whose audio column holds a path or a
``{"path", "bytes"}`` dict (never decoded samples), plus ``id``, normalised ``text`` and header ``duration``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from asr_finetune.data.audio import AudioError, audio_info, describe_source, load_audio
from asr_finetune.data.local import is_local_dataset, load_local
from asr_finetune.data.report import DropCounts
from asr_finetune.errors import DataError

logger = logging.getLogger(__name__)


AUDIO_CHECKS = ("header", "tail", "full")
"""How much of each file the start-up check reads: the header; the header and the last frames (catches truncated
files); or everything (also catches NaN/inf samples and any decode error, at the cost of one full decode)."""

# ---------------------------------------------------------------------------------------------- hub datasets


def load_hub(
    name: str,
    expression: str,
    config_name: str | None,
    cache_dir: str | None,
    token: str | bool | None,
    trust_remote_code: bool,
    streaming: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    kwargs: dict[str, Any] = {"cache_dir": cache_dir, "token": token}
    if streaming:
        kwargs["streaming"] = True
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    try:
        return datasets.load_dataset(name, config_name, split=expression, **kwargs)
    except ValueError as err:
        if "split" in str(err).lower():
            raise DataError(
                f"{err} Set --train_split_name / --eval_split_name to one of the dataset's splits."
            ) from err
        raise


def load_split(
    dataset_name: str,
    split_expression: str,
    audio_column: str,
    *,
    text_column: str | None = None,
    config_name: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
) -> datasets.Dataset:
    """Load one split expression from a local path or the Hub, with the audio column left undecoded."""
    if is_local_dataset(dataset_name):
        dataset = load_local(dataset_name, split_expression, audio_column, text_column)
    else:
        dataset = load_hub(dataset_name, split_expression, config_name, cache_dir, token, trust_remote_code)
    feature = dataset.features.get(audio_column)
    if isinstance(feature, datasets.Audio) and feature.decode:
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    return dataset


def check_columns(columns: Sequence[str], required: dict[str, str], where: str) -> None:
    """Fail with the columns a dataset (or stream) does have when a required one is missing.

    ``required`` maps column names to the flag that sets them, e.g. ``{"sentence": "--text_column_name"}``.
    """
    missing = {column: flag for column, flag in required.items() if column not in columns}
    if missing:
        wanted = ", ".join(f"{column!r} (set with {flag})" for column, flag in missing.items())
        raise DataError(f"{where} has no column {wanted}. Columns it has: {', '.join(columns)}.")


def _row_id(row: dict[str, Any], index: int, audio_column: str, id_column: str | None, split_label: str) -> str:
    if id_column and row.get(id_column) not in (None, ""):
        return str(row[id_column])
    source = row.get(audio_column)
    if isinstance(source, (str, dict)):
        name = describe_source(source)
        if not name.startswith("<"):
            return name
    return f"{split_label}[{index}]"


def _header_batch(
    batch: dict[str, list],
    indices: list[int],
    audio_column: str,
    id_column: str | None,
    split_label: str,
    check: str = "tail",
) -> dict[str, list]:
    ids, durations, errors = [], [], []
    for offset, index in enumerate(indices):
        row = {key: values[offset] for key, values in batch.items()}
        ids.append(_row_id(row, index, audio_column, id_column, split_label))
        try:
            info = audio_info(row[audio_column], check_tail=check == "tail")
            if check == "full" and info.num_frames > 0:
                load_audio(row[audio_column], info.sampling_rate)
            durations.append(info.duration)
            errors.append("" if info.num_frames > 0 else "empty audio (0 samples)")
        except AudioError as err:
            durations.append(0.0)
            errors.append(str(err))
    return {"id": ids, "duration": durations, "audio_error": errors}


def read_headers(
    dataset: datasets.Dataset,
    audio_column: str,
    split_label: str,
    *,
    id_column: str | None = "id",
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
    check: str = "tail",
) -> datasets.Dataset:
    """Add ``id``, ``duration`` (seconds, from the file header) and ``audio_error`` columns.

    ``check`` (one of :data:`AUDIO_CHECKS`) says how much of each file is read to find unusable audio at start.
    """
    if id_column and id_column not in dataset.column_names:
        id_column = None
    return dataset.map(
        _header_batch,
        batched=True,
        with_indices=True,
        fn_kwargs={"audio_column": audio_column, "id_column": id_column, "split_label": split_label, "check": check},
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) >= 2 * num_proc else None,
        load_from_cache_file=load_from_cache_file,
        desc=f"Reading audio headers ({split_label})",
    )


def drop_rows(dataset: datasets.Dataset, keep: Sequence[bool], reason: str, drops: DropCounts) -> datasets.Dataset:
    """Remove rows where ``keep`` is False, counting them under ``reason``."""
    dropped = [index for index, ok in enumerate(keep) if not ok]
    if not dropped:
        return dataset
    drops.add(reason, len(dropped), [dataset[index]["id"] for index in dropped[:3]])
    return dataset.select([index for index, ok in enumerate(keep) if ok])


def drop_too_short_for_masks(
    dataset: datasets.Dataset, frames: Sequence[int], min_frames: int, drops: DropCounts
) -> datasets.Dataset:
    """The one rule for clips too short for SpecAugment / pretraining time masks (``frames``: encoder frames per
    row): they crash the masking mid-run, so they are dropped at start and counted."""
    reason = f"too short for the time masks (fewer than {min_frames} encoder frames)"
    return drop_rows(dataset, [count >= min_frames for count in frames], reason, drops)


def reject_bad_rows(
    dataset: datasets.Dataset,
    problems: Sequence[str],
    split_label: str,
    on_bad_row: str,
    drops: DropCounts,
    reason: str,
) -> datasets.Dataset:
    """Rows with a non-empty problem string stop the run (listing them), or are dropped and counted."""
    bad = [index for index, problem in enumerate(problems) if problem]
    if not bad:
        return dataset
    if on_bad_row != "skip":
        shown = "\n".join(f"  row {index} ({dataset[index]['id']}): {problems[index]}" for index in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(
            f"{len(bad)} bad row(s) in {split_label}:\n{shown}{more}\n"
            "Fix or remove them, or pass --on_bad_row skip to drop such rows and count them."
        )
    logger.warning("%s: skipping %d row(s) with %s (--on_bad_row skip).", split_label, len(bad), reason)
    return drop_rows(dataset, [not problem for problem in problems], reason, drops)


@dataclass
class SplitConfig:
    """Everything :func:`prepare_split` needs to know, independent of the entry script."""

    dataset_name: str
    audio_column: str = "audio"
    text_column: str | None = "text"
    id_column: str | None = "id"
    config_name: str | None = None
    cache_dir: str | None = None
    token: str | bool | None = None
    trust_remote_code: bool = False
    num_proc: int | None = None
    overwrite_cache: bool = False
    on_bad_row: str = "error"
    min_duration: float = 0.0
    max_duration: float | None = None
    audio_check: str = "tail"


def prepare_split(
    config: SplitConfig,
    split_expression: str,
    normalize: Callable[[list[str]], list[str]] | None,
    *,
    max_samples: int | None = None,
) -> tuple[datasets.Dataset, DropCounts]:
    """Load a split, check it, read headers, normalise text, and drop what cannot be trained on.

    Returns the dataset with columns ``id``, the audio column, ``text`` (when a text column is set)
    and ``duration``, plus the counts of rows dropped per reason.
    """
    label = f"{config.dataset_name} split {split_expression!r}"
    dataset = load_split(
        config.dataset_name,
        split_expression,
        config.audio_column,
        text_column=config.text_column,
        config_name=config.config_name,
        cache_dir=config.cache_dir,
        token=config.token,
        trust_remote_code=config.trust_remote_code,
    )
    dataset, drops = prepare_rows(dataset, config, normalize, label, max_samples=max_samples)
    if len(dataset) == 0:
        raise DataError(f"No usable rows left in {label} (dropped: {drops.summary()}).")
    return dataset, drops


def prepare_rows(
    dataset: datasets.Dataset,
    config: SplitConfig,
    normalize: Callable[[list[str]], list[str]] | None,
    label: str,
    *,
    max_samples: int | None = None,
) -> tuple[datasets.Dataset, DropCounts]:
    """The checks and filters of :func:`prepare_split` on rows already loaded: a whole split, or one block of a
    stream (:mod:`asr_finetune.data.streaming`). ``label`` names the rows in messages. May return no rows."""
    required = {config.audio_column: "--audio_column_name"}
    if config.text_column:
        required[config.text_column] = "--text_column_name"
    check_columns(dataset.column_names, required, label)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))

    keep = [config.audio_column, config.id_column or "id"]
    if config.text_column:
        keep.append(config.text_column)
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
    dataset = read_headers(
        dataset,
        config.audio_column,
        label,
        id_column=config.id_column,
        num_proc=config.num_proc,
        load_from_cache_file=not config.overwrite_cache,
        check=config.audio_check,
    )
    drops = DropCounts()
    dataset = reject_bad_rows(
        dataset, dataset["audio_error"], label, config.on_bad_row, drops, "unreadable or empty audio"
    )
    dataset = dataset.remove_columns("audio_error")

    if config.text_column:
        raw = dataset[config.text_column]
        texts = normalize([t if isinstance(t, str) else "" for t in raw]) if normalize else list(raw)
        if config.text_column != "text" and "text" in dataset.column_names:
            dataset = dataset.remove_columns("text")
        dataset = dataset.remove_columns(config.text_column).add_column("text", texts)
        problems = ["empty transcript (after normalisation)" if not text else "" for text in texts]
        dataset = reject_bad_rows(dataset, problems, label, config.on_bad_row, drops, "empty transcripts")

    shorter = f"shorter than --min_duration_in_seconds {config.min_duration}"
    dataset = drop_rows(dataset, [d >= config.min_duration for d in dataset["duration"]], shorter, drops)
    if config.max_duration is not None:
        longer = f"longer than --max_duration_in_seconds {config.max_duration}"
        dataset = drop_rows(dataset, [d <= config.max_duration for d in dataset["duration"]], longer, drops)
    return dataset, drops
