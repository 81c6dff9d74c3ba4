"""Local datasets: a folder of splits (audiofolder, or ``<split>.jsonl/.csv/.tsv`` manifests) or one manifest file,
read into a ``datasets.Dataset`` whose audio column holds paths (never decoded samples)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from asr_finetune.errors import DataError

MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
METADATA_STEM = "metadata"
AUDIOFOLDER_PATH_COLUMN = "file_name"

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


def load_local(root: str, expression: str, audio_column: str, text_column: str | None) -> datasets.Dataset:
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
