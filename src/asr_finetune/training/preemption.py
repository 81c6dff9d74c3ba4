"""Stopping on request: SIGTERM (what Slurm and Kubernetes send before they kill), SIGUSR1 (Slurm's
``--signal=USR1@90``) and Ctrl-C. During training the current step is finished, a complete checkpoint written and the
run ends with :class:`~asr_finetune.errors.Stopped` (exit ``128 + signal``); a rerun resumes from that checkpoint.
Asked a second time, it stops at once with the same one-line exit. The handlers are in place while the Trainer
trains; outside that, the signals keep their usual meaning (Ctrl-C: one line, exit 130). With several processes the
request is shared at the end of every step, so all of them stop after the same step."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch
from transformers import TrainerCallback

from asr_finetune.errors import Stopped

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopRequest:
    """Signal handlers that record a stop request while training runs, and stop at once otherwise."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.training = False
        self.stopped_at: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the handlers found at :meth:`install` (training is over)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if not self.training or self.signum is not None:
            raise Stopped(f"{name}: stopped at once; the last complete checkpoint is kept. Rerun the command to "
                          "resume.", signum)  # fmt: skip
        self.signum = signum
        logger.warning("%s: finishing this step and saving a checkpoint before stopping (send it again to stop at "
                       "once).", name)  # fmt: skip

    def agreed(self, accelerator: Any, world_size: int, device: Any) -> bool:
        """True when this process or any other was asked to stop: every process stops after the same step, or the
        save's collectives would hang."""
        stop = self.signum is not None
        if world_size > 1:
            flag = torch.tensor([float(stop)], device=device)
            stop = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
        return stop

    def raise_if_stopped(self, output_dir: str | Any) -> None:
        """After training returned: end the run if it stopped on request (nothing published as final)."""
        if self.stopped_at is None:
            return
        signum = self.signum if self.signum is not None else signal.SIGTERM  # another process was asked
        raise Stopped(f"{signal.Signals(signum).name}: stopped after step {self.stopped_at}; "
                      f"{output_dir}/checkpoint-{self.stopped_at} is saved. Rerun the same command to resume.", signum)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """A :class:`StopRequest` whose handlers are in place for the ``with`` block (a training loop of our own)."""
    request = StopRequest()
    request.install()
    request.training = True
    try:
        yield request
    finally:
        request.training = False
        request.restore()


class StopRequestCallback(TrainerCallback):
    """Turns a recorded stop request into the Trainer's save-and-stop at the end of the current step."""

    def __init__(self, trainer: Any, request: StopRequest) -> None:
        self.trainer = trainer
        self.request = request

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.request.install()
        self.request.training = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.request.agreed(self.trainer.accelerator, args.world_size, args.device):
            control.should_save = True
            control.should_training_stop = True
            self.request.stopped_at = state.global_step

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.request.training = False
        self.request.restore()
