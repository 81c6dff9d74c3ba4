"""What data loading kept and dropped, per split and reason: counted, logged, and written to data_report.json."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from asr_finetune.files import write_json

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- preparation


@dataclass
class DropCounts:
    """Rows removed from a split, by reason, with a few example ids for each reason."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    shards_left_out: dict[str, str] = field(default_factory=dict)
    """Whole shards of a stream left out at start (path -> why), besides the rows counted above."""

    def add(self, reason: str, count: int, example_ids: Sequence[str]) -> None:
        self.counts[reason] += count
        examples = self.examples.setdefault(reason, [])
        examples.extend(example_ids[: max(0, 3 - len(examples))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = [f"{count} {reason} (e.g. {', '.join(self.examples.get(reason, [])[:3])})"
                 for reason, count in self.counts.most_common()]
        if self.shards_left_out:
            parts.append(f"{len(self.shards_left_out)} shard(s) left out ({', '.join(self.shards_left_out)})")
        return "; ".join(parts) or "none"

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


# ---------------------------------------------------------------------------------------------- report

DATA_REPORT_FILE = "data_report.json"


def log_splits(splits: dict[str, datasets.Dataset], drops: dict[str, DropCounts]) -> None:
    """One log line per split: what was kept, and what was dropped and why."""
    for name, split in splits.items():
        hours = sum(split["duration"]) / 3600
        logger.info("%s: %d utterances, %.2f h; dropped: %s", name, len(split), hours, drops[name].summary())


def write_data_report(
    output_dir: str | Path,
    splits: dict[str, datasets.Dataset],
    drops: dict[str, DropCounts],
    per_split: dict[str, dict[str, Any]] | None = None,
    **top: Any,
) -> None:
    """data_report.json, one format for every script: per split the utterances and hours kept, what was dropped,
    why and examples, plus ``per_split`` extras (e.g. characters the vocab lacks) and ``top`` entries."""

    report: dict[str, Any] = dict(top)
    for name, split in splits.items():
        report[name] = {
            "utterances": len(split),
            "hours": round(sum(split["duration"]) / 3600, 4),
            "dropped": drops[name].as_dict(),
            "dropped_examples": drops[name].examples,
            **({"shards_left_out": drops[name].shards_left_out} if drops[name].shards_left_out else {}),
            **(per_split or {}).get(name, {}),
        }
    write_json(report, Path(output_dir) / DATA_REPORT_FILE)


def recorded_vocab_source(output_dir: str | Path) -> str | None:
    """Where the vocab of ``output_dir`` came from, as its data_report.json says (None if it does not say)."""
    try:
        source = json.loads((Path(output_dir) / DATA_REPORT_FILE).read_text(encoding="utf-8")).get("vocab")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) and source else None
