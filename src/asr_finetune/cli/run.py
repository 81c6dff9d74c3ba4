"""The wrapper every command runs its ``main`` in: one-line errors with exit status 2, teardown either way."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from asr_finetune.errors import Stopped, UsageError, one_line
from asr_finetune.training.launch import end_distributed
from asr_finetune.training.run_lock import release_all


def run_cli(main: Callable[[], Any]) -> None:
    """Run an entry script's ``main``; a user mistake (bad flags, bad data, an impossible request, a busy or full
    output dir, a NaN step) ends it with a one-line message and exit status 2, no traceback. The process group
    of a distributed run is torn down and the output_dir lock released either way. A run stopped on request
    (SIGTERM, SIGUSR1, Ctrl-C: :mod:`asr_finetune.training.preemption`) says what it saved in one line and exits
    ``128 + signal``."""

    failed = False
    try:
        main()
    except UsageError as err:
        failed = True
        logging.getLogger("asr_finetune").error("%s", one_line(err))
        sys.exit(2)
    except Stopped as err:
        failed = True
        logging.getLogger("asr_finetune").warning("%s", err)
        sys.exit(err.status)
    except KeyboardInterrupt:  # Ctrl-C outside training (during training it saves first: Stopped)
        failed = True
        logging.getLogger("asr_finetune").warning("Interrupted (Ctrl-C); the last complete checkpoint is kept. "
                                                  "Rerun the command to resume.")
        sys.exit(130)
    except BaseException:
        failed = True  # a crash: no barrier for the other processes (it would hide this traceback forever)
        raise
    finally:
        release_all()
        end_distributed(abort=failed)
