"""Start and end of every entry script: the CLI wrapper (one-line errors, exit 2, teardown), start-up checks that
all three scripts make, and write failures turned into one line."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError, one_line
from .files import describe_write_failure

logger = logging.getLogger(__name__)

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


def run_cli(main: Callable[[], Any]) -> None:
    """Run an entry script's ``main``; a user mistake (bad flags, bad data, an impossible request, a busy or full
    output dir, a NaN step) ends it with a one-line message and exit status 2, no traceback. The process group
    of a distributed run is torn down and the output_dir lock released either way. The process first restarts
    itself with tcmalloc preloaded where the machine has it (:mod:`asr_finetune.allocator`)."""
    from .allocator import restart_with_tcmalloc
    from .launch import end_distributed
    from .run_lock import release_all

    restart_with_tcmalloc()
    failed = False
    try:
        main()
    except UsageError as err:
        failed = True
        logging.getLogger("asr_finetune").error("%s", one_line(err))
        sys.exit(2)
    except BaseException:
        failed = True  # a crash: no barrier for the other processes (it would hide this traceback forever)
        raise
    finally:
        release_all()
        end_distributed(abort=failed)
