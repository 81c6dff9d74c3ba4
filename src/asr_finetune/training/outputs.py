"""What a run leaves in output_dir: final model published atomically, data report, the command line."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from asr_finetune.errors import UsageError, one_line
from asr_finetune.files import describe_write_failure, give_default_mode
from asr_finetune.training.redaction import redact_argv

logger = logging.getLogger(__name__)

PARTIAL_DIR = ".partial-final"


def publish_files(staging: str | Path, output_dir: str | Path) -> list[str]:
    """Move every file of ``staging`` into ``output_dir`` one rename at a time, then remove ``staging``.

    The model is first written in full to the staging folder, so a run killed while saving leaves the
    previous files in output_dir intact rather than a half-written model.
    """
    staging, output_dir = Path(staging), Path(output_dir)
    give_default_mode(staging)
    moved = []
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            target = output_dir / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(str(target.relative_to(output_dir)))
    shutil.rmtree(staging, ignore_errors=True)
    return moved


PROCESSOR_STAGING = ".partial-processor"


def publish_processor_files(write: Callable[[Path], None], output_dir: str | Path, keep_existing: bool) -> list[str]:
    """Write a processor's files (``write(folder)``) to ``output_dir`` through a staging folder. ``keep_existing``
    (a resumed or finished run): files already there stay byte for byte, they are the ones the run started with."""
    output_dir = Path(output_dir)
    staging = output_dir / PROCESSOR_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    with disk_errors(output_dir):
        try:
            staging.mkdir(parents=True)
            write(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # a full disk: nothing half-written is published
            raise
    if keep_existing:
        for path in staging.rglob("*"):
            if path.is_file() and (output_dir / path.relative_to(staging)).exists():
                path.unlink()
    return publish_files(staging, output_dir)


def command_line(argv: Sequence[str] | None = None, script: str | None = None) -> str:
    """The command that ran (``script`` with ``argv``, by default this process's), credentials redacted: the model
    card is what --push_to_hub publishes."""
    script = Path(script).name if script else sys.argv[0]
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join([Path(sys.executable).name, script, *redact_argv(argv)])


def push_to_hub(output_dir: str | Path, repo_id: str | None, token: str | None) -> None:
    """Upload the final model (not the checkpoints) to the Hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = repo_id or Path(output_dir).name
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=str(output_dir), ignore_patterns=["checkpoint-*", ".*", "_*", "*.partial"]
    )
    logger.info("Pushed %s to the Hub as %s", output_dir, repo_id)

@contextlib.contextmanager
def disk_errors(directory: str | Path) -> Iterator[None]:
    """Turn a write that failed for lack of space or permission into one line that says so."""
    try:
        yield
    except UsageError:
        raise
    except Exception as err:
        message = describe_write_failure(err, directory)
        if message is None:
            raise
        raise UsageError(message) from err


def check_hub_access(training_args: Any) -> None:
    """``--push_to_hub`` must be able to push: checked at start, not after hours of training."""
    if not getattr(training_args, "push_to_hub", False):
        return
    from huggingface_hub import HfApi

    try:
        HfApi(token=getattr(training_args, "hub_token", None)).whoami()
    except Exception as err:
        raise UsageError(
            f"--push_to_hub: cannot use the Hugging Face Hub ({type(err).__name__}: {one_line(err)[:120]}). Log in "
            "with `hf auth login` (or pass --hub_token), check the network, or drop --push_to_hub."
        ) from err
