"""One output_dir, one run: a lock file naming the run that holds it (pid, host, start time, command).

A second run started in the same output_dir would otherwise interleave its checkpoints with the first one's and
silently replace them. A lock whose process is gone (same host, pid no longer running) is stale and taken over, by
one process only however many try at once (a takeover file created with O_EXCL guards the removal). A lock from
another host cannot be checked by pid: its holder renews it (mtime) every 30 s, and one not renewed for 5 minutes
is stale (a requeued job on another machine resumes without anyone deleting files).
The file name starts with "_" so that the Trainer's push to the Hub leaves it out.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from asr_finetune.errors import UsageError
from asr_finetune.files import describe_write_failure
from asr_finetune.training.redaction import redact_argv

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOCK_FILE = "_asr_finetune.lock"
_held: list[Path] = []


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holder_is_gone(holder: dict[str, Any] | None, path: Path) -> bool:
    if holder is None:  # unreadable: a run that died while writing it, unless it is being written right now
        try:
            return time.time() - path.stat().st_mtime > 10
        except OSError:
            return True
    if holder.get("host") != socket.gethostname():  # its pid cannot be looked at from here: its lease can
        try:
            return time.time() - path.stat().st_mtime > LEASE_S
        except OSError:
            return True
    return not _pid_running(int(holder.get("pid", -1)))


LEASE_S = 300.0
"""A lock from another host whose holder has not renewed it (its mtime) for this long is stale: a requeued job on
another machine takes over a killed run's lock after at most this wait, never a live run's."""
HEARTBEAT_S = 30.0


def renew_leases() -> None:
    """Touch every lock this process holds: its lease starts again."""
    for path in list(_held):
        try:
            os.utime(path)
        except OSError:
            pass


def _renew_leases_forever() -> None:
    while True:
        time.sleep(HEARTBEAT_S)
        renew_leases()


_heartbeat: list[threading.Thread] = []


TAKEOVER_SUFFIX = ".takeover"
TAKEOVER_STALE_S = 10.0


def _take_over(path: Path, judged: dict[str, Any] | None) -> bool:
    """Remove the stale lock at ``path``, atomically with respect to every other run doing the same: only the
    process that creates ``<lock>.takeover`` (O_EXCL) may remove it, and only if the lock is still the one judged
    stale. Returns False when another process is taking over (try again)."""
    guard = path.with_name(path.name + TAKEOVER_SUFFIX)
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:  # a takeover left behind by a process that died inside it
            if time.time() - guard.stat().st_mtime > TAKEOVER_STALE_S:
                guard.unlink(missing_ok=True)
        except OSError:
            pass
        time.sleep(0.05)
        return False
    try:
        os.close(fd)
        current = _read(path)
        if current == judged and _holder_is_gone(current, path):  # still the stale one, not a run's new lock
            path.unlink(missing_ok=True)
        return True
    finally:
        guard.unlink(missing_ok=True)


def acquire(output_dir: str | Path) -> Path:
    """Take the lock of ``output_dir`` for this process, or raise UsageError naming the run that holds it."""
    directory = Path(output_dir)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--output_dir {directory} is a file, not a folder: give a folder (it is created if missing).")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return _acquire(directory)
    except OSError as err:
        message = describe_write_failure(err, directory)
        if message is None:
            raise
        raise UsageError(message) from None


def _acquire(directory: Path) -> Path:
    path = directory / LOCK_FILE
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(redact_argv(sys.argv)),
    }
    deadline = time.time() + 2 * TAKEOVER_STALE_S
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                break  # this process took it already (main() called again in one interpreter)
            if not _holder_is_gone(holder, path):
                who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                       if holder else "a run that is starting")
                raise UsageError(
                    f"{directory} is in use by another run ({who}). Wait for it to finish or use another "
                    f"--output_dir. A run on another machine that was killed gives its lock up "
                    f"{LEASE_S / 60:.0f} minutes after its last renewal."
                ) from None
            if time.time() > deadline:
                raise UsageError(f"Could not take the lock {path}: another run keeps replacing it.") from None
            if _take_over(path, holder):
                logger.warning("Taking over the stale lock of %s (%s: no longer running).", directory,
                               f"pid {holder.get('pid')}" if holder else "unreadable lock file")
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
        except OSError:
            path.unlink(missing_ok=True)  # never leave an empty lock behind (a full disk)
            raise
        break
    if path not in _held:
        _held.append(path)
    if not _heartbeat:
        _heartbeat.append(threading.Thread(target=_renew_leases_forever, name="asr-finetune-lock-lease", daemon=True))
        _heartbeat[0].start()
    return path


def release_all() -> None:
    """Remove the locks this process holds (at exit, or when an entry script ends)."""
    while _held:
        path = _held.pop()
        holder = _read(path)
        if holder and holder.get("pid") == os.getpid():
            path.unlink(missing_ok=True)


atexit.register(release_all)


def releases_output_dir(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate an entry script's ``main``: the lock it took is released when it returns or fails."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return main(*args, **kwargs)
        finally:
            release_all()

    return wrapper


def lock_output_dir(output_dir: str | Path, is_main_process: bool) -> None:
    """The main process takes the lock; every process of a distributed run learns the outcome and stops alike."""
    error = None
    if is_main_process:
        try:
            acquire(output_dir)
        except UsageError as err:
            error = str(err)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise UsageError(error)
