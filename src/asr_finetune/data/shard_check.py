"""A cheap look at every local shard before a stream reads it: each parquet file's footer and schema, each tar
file's index. A cut, empty or foreign shard is named at start (by file, and member for a tar), not met as a
traceback at the step that reaches it; under ``--on_bad_row skip`` it is left out and counted."""

from __future__ import annotations

import logging
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from asr_finetune.errors import DataError

logger = logging.getLogger(__name__)

TRANSCRIPT_EXTENSIONS = ("txt", "json")
_MEMBER = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")  # WebDataset: KEY.EXT, the key up to the basename's first dot
_SHOWN = 10


@dataclass
class ShardCheck:
    """The shards a stream reads, those left out (file -> why), and row-level problems found in the tar indexes
    (``file: member``), which the stream then meets as rows without a transcript or audio."""

    files: list[str]
    left_out: dict[str, str] = field(default_factory=dict)
    member_problems: list[str] = field(default_factory=list)


def check_shards(builder: str, files: list[str], audio_column: str, text_column: str, on_bad_row: str,
                 label: str, audio_extensions: tuple[str, ...]) -> ShardCheck:
    """Check ``files`` (``builder`` "parquet" or "webdataset") at start.

    Shards that cannot be read, or whose columns differ from the others', stop the run with every one named, or
    are left out under ``on_bad_row == "skip"``. Shards with no rows are left out in either case (they hold
    nothing to lose; datasets cannot stream them). Tar members without a transcript or without audio stop the run,
    or are left to the row checks (dropped and counted) under skip.
    """
    problems: dict[str, str] = {}
    empty: list[str] = []
    kinds: dict[str, object] = {}
    members: list[str] = []
    for path in files:
        try:
            if builder == "parquet":
                kind, rows = _parquet_schema(path, audio_column, text_column)
            else:
                kind, rows, missing = _tar_index(path, audio_extensions)
                members += [f"{Path(path).name}: {problem}" for problem in missing]
        except _BadShard as err:
            problems[path] = str(err)
            continue
        if rows == 0:
            empty.append(path)
        else:
            kinds[path] = kind
    problems.update(_odd_ones_out(kinds, builder))
    if problems and on_bad_row != "skip":
        shown = "\n".join(f"  {path}: {why}" for path, why in list(problems.items())[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise DataError(f"{len(problems)} bad shard(s) in {label}:\n{shown}{more}\nFix or remove them (rewrite "
                        "them with scripts/make_shards.py), or pass --on_bad_row skip to leave them out and count "
                        "them.")
    if members and on_bad_row != "skip":
        shown = "\n".join(f"  {member}" for member in members[:_SHOWN])
        more = f"\n  ... and {len(members) - _SHOWN} more" if len(members) > _SHOWN else ""
        raise DataError(f"{len(members)} incomplete sample(s) in the tar shards of {label}:\n{shown}{more}\n"
                        "Add the missing files, or pass --on_bad_row skip to drop such rows and count them.")
    left_out = {**problems, **{path: "no rows" for path in empty}}
    for path, why in left_out.items():
        logger.warning("%s: leaving out shard %s (%s)%s.", label, path, why,
                       "" if why == "no rows" else "; --on_bad_row skip")
    if members:
        logger.warning("%s: %d incomplete tar sample(s), dropped and counted as they are read (--on_bad_row "
                       "skip), e.g. %s.", label, len(members), "; ".join(members[:3]))
    kept = [path for path in files if path not in left_out]
    if not kept:
        raise DataError(f"{label}: none of its {len(files)} shard(s) can be read: "
                        + "; ".join(f"{Path(path).name}: {why}" for path, why in list(left_out.items())[:_SHOWN]))
    return ShardCheck(kept, left_out, members)


class _BadShard(Exception):
    pass


def _parquet_schema(path: str, audio_column: str, text_column: str) -> tuple[object, int]:
    """(the schema without metadata, rows) from the footer alone."""
    if Path(path).stat().st_size == 0:
        raise _BadShard("0 bytes")
    try:
        metadata = pq.ParquetFile(path)
        schema = metadata.schema_arrow
    except (OSError, pa.ArrowException) as err:
        raise _BadShard(f"not a readable parquet file, cut or corrupt ({err})") from None
    names = schema.names
    missing = [f"{column!r} (set with {flag})" for column, flag in ((audio_column, "--audio_column_name"),
                                                                  (text_column, "--text_column_name"))
               if column not in names]
    if missing:
        raise _BadShard(f"no column {', '.join(missing)}; its columns: {', '.join(names)}")
    return schema.remove_metadata(), metadata.metadata.num_rows


def _tar_index(path: str, audio_extensions: tuple[str, ...]) -> tuple[object, int, list[str]]:
    """(the kind of transcript its samples carry, samples, incomplete samples) from the tar headers alone."""
    size = Path(path).stat().st_size
    if size == 0:
        raise _BadShard("0 bytes")
    samples: dict[str, set[str]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if info.offset_data + info.size > size:
                    raise _BadShard(f"cut: member {info.name} ends past the end of the file")
                found = _MEMBER.match(info.name) if info.isfile() else None
                if found:
                    samples.setdefault(found[1], set()).add(found[2].lower())
    except (tarfile.TarError, OSError, EOFError) as err:
        raise _BadShard(f"not a readable tar file, cut or corrupt ({err})") from None
    transcripts: Counter[str] = Counter()
    incomplete = []
    for key, extensions in samples.items():
        kinds = [ext for ext in TRANSCRIPT_EXTENSIONS if ext in extensions]
        transcripts.update(kinds)
        if not kinds:
            incomplete.append(f"{key} has no transcript ({key}.txt or {key}.json)")
        if not any(ext in extensions for ext in audio_extensions):
            incomplete.append(f"{key} has no audio ({key}.{' / .'.join(audio_extensions)})")
    if len(transcripts) > 1:
        raise _BadShard(f"mixes .txt and .json transcripts ({transcripts['txt']} and {transcripts['json']}): "
                        "use one kind for the whole dataset")
    return next(iter(transcripts), None), len(samples), incomplete


def _odd_ones_out(kinds: dict[str, object], builder: str) -> dict[str, str]:
    """Shards whose columns (parquet) or transcript files (tar) differ from most shards': a stream takes its columns
    from the first shard and fails at the first row of another kind."""
    if len(set(map(str, kinds.values()))) <= 1:
        return {}
    counts = Counter(map(str, kinds.values()))
    usual = max(counts, key=lambda kind: (counts[kind], -list(map(str, kinds.values())).index(kind)))
    example = next(path for path, kind in kinds.items() if str(kind) == usual)
    odd = {}
    for path, kind in kinds.items():
        if str(kind) == usual:
            continue
        if builder == "parquet":
            theirs = ", ".join(f"{f.name} {f.type}" for f in kind)  # type: ignore[attr-defined]
            ours = ", ".join(f"{f.name} {f.type}" for f in kinds[example])  # type: ignore[attr-defined]
            odd[path] = f"its columns ({theirs}) differ from those of {counts[usual]} other shard(s) ({ours})"
        else:
            odd[path] = (f"its transcripts are .{kind} files, those of {counts[usual]} other shard(s) "
                         f".{usual} files: use one kind for the whole dataset")
    return odd
