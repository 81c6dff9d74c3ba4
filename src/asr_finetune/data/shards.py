"""Write a local dataset as streamable shards: parquet files with the audio bytes embedded and datasets' feature
metadata (the Hub's own format), or WebDataset tar files (``KEY.wav``/``KEY.flac`` + ``KEY.json``).

``scripts/make_shards.py`` is the command line; ``--streaming`` reads either from ``DIR/SPLIT/``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import datasets

from asr_finetune.data.audio import AudioError, audio_info
from asr_finetune.data.local import discover_local_splits, read_manifest
from asr_finetune.errors import DataError

FORMATS = ("parquet", "tar")


def _audio_bytes(source: Any) -> tuple[bytes, str]:
    if isinstance(source, dict) and source.get("bytes") is not None:
        return source["bytes"], Path(source.get("path") or "clip.wav").name
    path = Path(source if isinstance(source, str) else source["path"])
    return path.read_bytes(), path.name


def write_shards(
    rows: list[dict[str, Any]], output_dir: str | Path, split: str, num_shards: int, fmt: str = "parquet",
    audio_column: str = "audio", text_column: str = "text",
) -> list[Path]:
    """``rows`` (audio as a path or ``{"bytes", "path"}``, a transcript, optional ``id``) as ``num_shards`` files in
    ``output_dir/split/``, rows dealt in order (shard i holds rows i, i + n, ...). Returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    if not 1 <= num_shards <= len(rows):
        raise DataError(f"{num_shards} shard(s) for {len(rows)} row(s): give 1 to {len(rows)}.")
    folder = Path(output_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(num_shards):
        part = rows[index::num_shards]
        name = folder / f"{split}-{index:05d}-of-{num_shards:05d}.{fmt}"
        (_write_parquet if fmt == "parquet" else _write_tar)(part, name, audio_column, text_column)
        written.append(name)
    return written


def _write_parquet(rows: list[dict[str, Any]], path: Path, audio_column: str, text_column: str) -> None:
    records = []
    for number, row in enumerate(rows):
        data, name = _audio_bytes(row[audio_column])
        records.append({"id": str(row.get("id") or name or number), audio_column: {"bytes": data, "path": name},
                        text_column: row.get(text_column)})
    # Cast, not encoded: datasets encodes Audio with torchcodec, which this torch cannot load; the bytes are final.
    table = datasets.Dataset.from_list(records).cast_column(audio_column, datasets.Audio(decode=False))
    table.cast_column(audio_column, datasets.Audio()).to_parquet(str(path))


def _write_tar(rows: list[dict[str, Any]], path: Path, audio_column: str, text_column: str) -> None:
    with tarfile.open(path, "w") as tar:
        for number, row in enumerate(rows):
            data, name = _audio_bytes(row[audio_column])
            key = str(row.get("id") or Path(name).stem or number).replace(".", "_").replace("/", "_")
            suffix = Path(name).suffix.lstrip(".").lower() or "wav"
            for member, payload in ((f"{key}.{suffix}", data),
                                    (f"{key}.json", json.dumps({text_column: row.get(text_column)}).encode())):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def local_rows(dataset_dir: str | Path, split: str, audio_column: str = "audio") -> list[dict[str, Any]]:
    """The rows of one split of a local dataset (audiofolder or manifests), paths resolved, unreadable files
    named."""
    splits = discover_local_splits(dataset_dir)
    if split not in splits:
        raise DataError(f"{dataset_dir} has no split {split!r}; it has {', '.join(sorted(splits))}.")
    rows = read_manifest(splits[split], audio_column, None)
    for row in rows:
        try:
            audio_info(row[audio_column])
        except AudioError as err:
            raise DataError(f"{splits[split]}: {err}") from None
    return rows
