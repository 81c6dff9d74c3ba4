"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 with the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def give_default_mode(directory: str | os.PathLike) -> None:
    """Give every file of ``directory`` (recursively) the mode of a normally created file: transformers 5.x writes
    model.safetensors through a 0600 temp file, so one run would leave files that others can and cannot read."""
    mode = default_file_mode()
    for path in Path(directory).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, then rename it into place.

    The file gets the same mode as every other file of the run (temp files are created 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
        try:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        except OSError:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    os.chmod(tmp.name, default_file_mode())
    os.replace(tmp.name, path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A staging folder beside ``path`` to fill; on success it replaces ``path`` whole, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    give_default_mode(staging)
    mode = default_file_mode()
    staging.chmod(mode | (mode & 0o444) >> 2)  # a folder's mode under the umask (mkdtemp makes it 0700)
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def refuse_to_replace(path: str | os.PathLike, markers: Iterable[str], what: str) -> None:
    """Refuse to replace a non-empty folder that holds none of ``markers`` (the files of ``what``, the thing an
    :func:`atomic_dir` writes there): a mistyped output dir must not delete, say, a fine-tuned model."""
    from asr_finetune.errors import UsageError

    path = Path(path)
    if path.is_file():
        raise UsageError(f"{path} is a file: give a folder to write {what} to.")
    if path.is_dir() and any(path.iterdir()) and not any((path / marker).exists() for marker in markers):
        raise UsageError(f"{path} is a folder that holds something other than {what}; it would be replaced whole. "
                         "Give a new or empty folder.")


def write_json(data: Any, path: str | os.PathLike) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


_WRITE_FAILURE_HINTS = ("no space left", "storagefull", "file write failed", "basic_ios::clear", "iostream error",
                        "read-only file system", "disk quota", "permission denied")


def describe_write_failure(err: BaseException, directory: str | os.PathLike) -> str | None:
    """One line saying why writing under ``directory`` failed (disk full, read-only, no permission), or None when
    ``err`` is not a write failure. torch and safetensors report a full disk in their own words
    ("basic_ios::clear: iostream error", "file write failed"), so the free space is looked at too."""
    chain, seen = [], err
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    codes = {getattr(e, "errno", None) for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    if not (codes & {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}
            or any(hint in text for hint in _WRITE_FAILURE_HINTS)):
        return None
    directory = Path(directory)
    try:
        free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
    except OSError:
        free = None
    if errno.EROFS in codes or "read-only" in text:
        why = "the file system is read-only"
    elif errno.EACCES in codes or "permission denied" in text:
        why = "no permission to write there"
    elif free is not None and free < 64 * 2**20 or errno.ENOSPC in codes or "no space" in text:
        why = "the disk is full" + (f" ({free / 2**20:.0f} MB free)" if free is not None else "")
    else:
        why = f"the write failed ({type(err).__name__})"
    return (f"Cannot write to {directory}: {why}. Free space or use another --output_dir, then rerun the command: "
            "it resumes from the last complete checkpoint (half-written ones are skipped).")
