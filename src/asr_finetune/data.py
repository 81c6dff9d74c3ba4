"""Load splits from the Hub, a local audiofolder, or a CSV / JSON / JSONL manifest, and check them.

Every loader ends in the same shape: a ``datasets.Dataset`` whose audio column holds a path or a
``{"path", "bytes"}`` dict (never decoded samples), plus ``id``, normalised ``text`` and header ``duration``.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from .audio import AudioError, audio_info, describe_source, load_audio
from .errors import DataError

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
METADATA_STEM = "metadata"
AUDIOFOLDER_PATH_COLUMN = "file_name"


AUDIO_CHECKS = ("header", "tail", "full")
"""How much of each file the start-up check reads: the header; the header and the last frames (catches truncated
files); or everything (also catches NaN/inf samples and any decode error, at the cost of one full decode)."""

# ---------------------------------------------------------------------------------------------- split expressions

_SPLIT_PART = re.compile(r"^\s*(?P<name>[^\[\]+]+?)\s*(?:\[(?P<start>[^:\]]*):(?P<stop>[^\]]*)\])?\s*$")


@dataclass(frozen=True)
class SplitPart:
    """One term of a split expression such as ``train[:100]`` or ``validation[10%:]``."""

    name: str
    start: str = ""
    stop: str = ""

    def bounds(self, size: int) -> tuple[int, int]:
        def resolve(value: str, default: int) -> int:
            if value == "":
                return default
            if value.endswith("%"):
                index = round(float(value[:-1]) * size / 100)
            else:
                index = int(value)
            if index < 0:
                index += size
            return max(0, min(size, index))

        return resolve(self.start, 0), resolve(self.stop, size)


def parse_split_expression(expression: str) -> list[SplitPart]:
    """Parse ``train+validation``, ``train[:100]``, ``test[50%:]`` as the datasets library does."""
    parts = []
    for term in expression.split("+"):
        match = _SPLIT_PART.match(term)
        if not match:
            raise DataError(
                f"Cannot parse split expression {expression!r}: use names joined by '+', each optionally "
                "sliced like 'train[:100]' or 'train[10%:50%]'."
            )
        parts.append(SplitPart(match["name"], (match["start"] or "").strip(), (match["stop"] or "").strip()))
    return parts


# ---------------------------------------------------------------------------------------------- local datasets


def is_local_dataset(name: str) -> bool:
    return Path(name).expanduser().exists()


def discover_local_splits(root: str | Path) -> dict[str, Path]:
    """Map split names to manifest files for a local dataset path.

    - a manifest file: one split named after the file stem (``train.jsonl`` -> ``train``);
    - a directory of manifests: ``train.csv``, ``test.jsonl``, ... one split each;
    - an audiofolder: split sub-directories each holding ``metadata.{jsonl,csv}``, or one
      ``metadata.{jsonl,csv}`` at the top (a single ``train`` split).
    """
    root = Path(root).expanduser()
    if root.is_file():
        if root.suffix not in MANIFEST_SUFFIXES:
            raise DataError(f"{root} is not a manifest: expected one of {', '.join(MANIFEST_SUFFIXES)}.")
        return {root.stem: root}
    splits: dict[str, Path] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        metadata = _metadata_file(sub)
        if metadata is not None:
            splits[sub.name] = metadata
    if not splits:
        top = _metadata_file(root)
        if top is not None:
            return {"train": top}
        for path in sorted(root.iterdir()):
            if path.is_file() and path.suffix in MANIFEST_SUFFIXES:
                splits[path.stem] = path
    if not splits:
        raise DataError(
            f"No dataset found in {root}: expected split folders with metadata.jsonl/metadata.csv "
            "(audiofolder), or manifest files named <split>.jsonl / <split>.csv."
        )
    return splits


def _metadata_file(directory: Path) -> Path | None:
    for suffix in MANIFEST_SUFFIXES:
        candidate = directory / f"{METADATA_STEM}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_manifest(path: str | Path, audio_column: str, text_column: str | None = None) -> list[dict[str, Any]]:
    """Rows of a manifest, with audio paths made absolute (relative paths are relative to the manifest).

    Paths may point anywhere the user can read (absolute, or ``..`` out of the manifest's folder). Every row must
    be an object whose audio value is a path and whose transcript (``text_column``) is a string: a row that is not
    is an error naming the file and row.
    """
    path = Path(path)
    located = _read_rows(path)
    if not located:
        raise DataError(f"Manifest {path} has no rows.")
    rows = [row for _, row in located]
    if audio_column not in rows[0] and AUDIOFOLDER_PATH_COLUMN in rows[0]:
        for row in rows:
            if AUDIOFOLDER_PATH_COLUMN in row:
                row[audio_column] = row.pop(AUDIOFOLDER_PATH_COLUMN)
    base = path.parent
    for where, row in located:
        value = row.get(audio_column)
        if isinstance(value, str) and value:
            audio_path = Path(value).expanduser()
            row[audio_column] = str(audio_path if audio_path.is_absolute() else (base / audio_path).resolve())
        elif value is not None and not isinstance(value, (str, dict)):
            raise DataError(
                f"{path} {where}: the audio column {audio_column!r} holds {type(value).__name__} {value!r}; "
                "it must be a file path."
            )
        text = row.get(text_column) if text_column else None
        if text is not None and not isinstance(text, str):
            raise DataError(
                f"{path} {where}: the transcript ({text_column!r}) is {type(text).__name__} {text!r}, not text. "
                'Quote it as a string (e.g. "42").'
            )
    return rows


def _read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a manifest file, each with where it stands ("line 3", "row 2") for error messages."""
    try:
        if path.suffix in (".csv", ".tsv"):
            return _read_delimited(path, "\t" if path.suffix == ".tsv" else ",")
        if path.suffix == ".jsonl":
            rows = []
            with open(path, encoding="utf-8-sig") as handle:
                for line_number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        rows.append((f"line {line_number}", _as_row(json.loads(line), path, f"line {line_number}")))
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path}:{line_number} is not valid JSON: {err.msg}.") from err
            return rows
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err}.") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}.") from err
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path} must hold a JSON list of rows (or {{'data': [...]}}).")
    return [(f"row {index}", _as_row(row, path, f"row {index}")) for index, row in enumerate(data)]


def _as_row(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{path} {where} is {type(value).__name__}, not an object with column names.")
    return value


def _read_delimited(path: Path, delimiter: str) -> list[tuple[str, dict[str, Any]]]:
    """CSV/TSV rows; a byte-order mark is dropped, and a row with more or fewer fields than the header is an error
    (an unquoted comma in a transcript would otherwise cut it silently)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return []
        header = [name.strip() for name in header]
        rows = []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                name = "tab" if delimiter == "\t" else "comma"
                raise DataError(
                    f"{path} line {reader.line_num}: {len(fields)} fields, the header has {len(header)} "
                    f"({', '.join(header)}). Quote fields that contain a {name} "
                    f'(e.g. "one, two") or fix the row.'
                )
            rows.append((f"line {reader.line_num}", dict(zip(header, fields, strict=True))))
        return rows


def _load_local(root: str, expression: str, audio_column: str, text_column: str | None) -> datasets.Dataset:
    available = discover_local_splits(root)
    pieces = []
    for part in parse_split_expression(expression):
        if part.name not in available:
            raise DataError(
                f"Split {part.name!r} not found in {root}. Available splits: {', '.join(sorted(available))}. "
                "Set --train_split_name / --eval_split_name to one of them."
            )
        rows = read_manifest(available[part.name], audio_column, text_column)
        start, stop = part.bounds(len(rows))
        piece = _rows_to_dataset(rows[start:stop], available[part.name]) if stop > start else None
        if piece is not None:
            pieces.append(piece)
    if not pieces:
        raise DataError(f"Split expression {expression!r} selects no rows of {root}.")
    return pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)


def _rows_to_dataset(rows: list[dict[str, Any]], path: Path) -> datasets.Dataset:
    # from_list takes its columns from the first row alone: a column only later rows have would vanish silently.
    columns = list(dict.fromkeys(key for row in rows for key in row))
    try:
        return datasets.Dataset.from_dict({column: [row.get(column) for row in rows] for column in columns})
    except (TypeError, ValueError) as err:  # pyarrow: a column whose rows hold different types
        column = _mixed_column(rows)
        hint = f" Column {column!r} holds values of different types; make them all strings." if column else ""
        raise DataError(f"{path}: cannot read the rows as one table ({type(err).__name__}).{hint}") from err


def _mixed_column(rows: list[dict[str, Any]]) -> str | None:
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None:
                kinds.setdefault(key, set()).add(type(value).__name__)
    return next((key for key, names in kinds.items() if len(names) > 1), None)


# ---------------------------------------------------------------------------------------------- hub datasets


def _load_hub(
    name: str,
    expression: str,
    config_name: str | None,
    cache_dir: str | None,
    token: str | bool | None,
    trust_remote_code: bool,
) -> datasets.Dataset:
    kwargs: dict[str, Any] = {"cache_dir": cache_dir, "token": token}
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
        dataset = _load_local(dataset_name, split_expression, audio_column, text_column)
    else:
        dataset = _load_hub(dataset_name, split_expression, config_name, cache_dir, token, trust_remote_code)
    feature = dataset.features.get(audio_column)
    if isinstance(feature, datasets.Audio) and feature.decode:
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    return dataset


def check_columns(dataset: datasets.Dataset, required: dict[str, str], where: str) -> None:
    """Fail with the columns the dataset does have when a required one is missing.

    ``required`` maps column names to the flag that sets them, e.g. ``{"sentence": "--text_column_name"}``.
    """
    missing = {column: flag for column, flag in required.items() if column not in dataset.column_names}
    if missing:
        wanted = ", ".join(f"{column!r} (set with {flag})" for column, flag in missing.items())
        raise DataError(f"{where} has no column {wanted}. Columns it has: {', '.join(dataset.column_names)}.")


# ---------------------------------------------------------------------------------------------- preparation


@dataclass
class DropCounts:
    """Rows removed from a split, by reason, with a few example ids for each reason."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, count: int, example_ids: Sequence[str]) -> None:
        self.counts[reason] += count
        examples = self.examples.setdefault(reason, [])
        examples.extend(example_ids[: max(0, 3 - len(examples))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "none"
        return "; ".join(
            f"{count} {reason} (e.g. {', '.join(self.examples.get(reason, [])[:3])})"
            for reason, count in self.counts.most_common()
        )

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


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
    required = {config.audio_column: "--audio_column_name"}
    if config.text_column:
        required[config.text_column] = "--text_column_name"
    check_columns(dataset, required, label)
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
    if len(dataset) == 0:
        raise DataError(f"No usable rows left in {label} (dropped: {drops.summary()}).")
    return dataset, drops


# ---------------------------------------------------------------------------------------------- report

DATA_REPORT_FILE = "data_report.json"


def log_splits(splits: dict[str, datasets.Dataset], drops: dict[str, DropCounts]) -> None:
    """One log line per split: what was kept, and what was dropped and why."""
    for name, split in splits.items():
        hours = sum(split["duration"]) / 3600
        logger.info("%s: %d utterances, %.2f h; dropped: %s", name, len(split), hours, drops[name].summary())


def write_data_report(
    output_dir: str | Path,
    splits: dict[str, datasets.Dataset],
    drops: dict[str, DropCounts],
    per_split: dict[str, dict[str, Any]] | None = None,
    **top: Any,
) -> None:
    """data_report.json, one format for every script: per split the utterances and hours kept, what was dropped,
    why and examples, plus ``per_split`` extras (e.g. characters the vocab lacks) and ``top`` entries."""
    from .files import write_json

    report: dict[str, Any] = dict(top)
    for name, split in splits.items():
        report[name] = {
            "utterances": len(split),
            "hours": round(sum(split["duration"]) / 3600, 4),
            "dropped": drops[name].as_dict(),
            "dropped_examples": drops[name].examples,
            **(per_split or {}).get(name, {}),
        }
    write_json(report, Path(output_dir) / DATA_REPORT_FILE)
