"""What the pretraining loop reports: log lines, ``pretraining_log.jsonl`` (one JSON record per logging step and
validation) and the trackers of ``--report_to``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from asr_finetune.files import write_jsonl
from asr_finetune.training.curves import write_pretraining_curves
from asr_finetune.training.redaction import SECRET_FLAGS

logger = logging.getLogger(__name__)

LOG_FILE = "pretraining_log.jsonl"


class PretrainingLog:
    """Written by the main process only; every process may call it."""

    def __init__(self, accelerator: Accelerator, output_dir: str | Path, max_steps: int) -> None:
        self.accelerator = accelerator
        self.path = Path(output_dir) / LOG_FILE
        self.max_steps = max_steps

    def start(self, step: int, args: Any) -> None:
        """Keep the records up to ``step`` (a resumed run; a fresh run starts an empty log) and open the trackers
        with the run's flags (secrets left out)."""
        if self.accelerator.is_main_process:
            kept = []
            if step and self.path.is_file():
                records = (json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines())
                kept = [record for record in records if record.get("step", 0) <= step]
            write_jsonl(kept, self.path)
        if self.accelerator.log_with:
            config = {k: v for k, v in vars(args).items()
                      if isinstance(v, (int, float, str, bool)) and k not in SECRET_FLAGS}
            self.accelerator.init_trackers(self.path.parent.name, config=config)

    def emit(self, record: dict[str, Any]) -> None:
        """One log line, one line of the log file, and the trackers; ``record`` holds ``step``."""
        if not self.accelerator.is_main_process:
            return
        logger.info(" | ".join(f"{key} {_short(value)}" for key, value in record.items()))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if any(key.startswith("eval_") for key in record) or record["step"] >= self.max_steps:
            write_pretraining_curves(self.path, self.path.parent)  # training_curves.png
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
