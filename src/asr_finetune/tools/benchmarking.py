"""What the benchmark scripts share: a command timed under /usr/bin/time, and a markdown table."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TimedRun:
    """A finished command: wall seconds, peak RSS (GB) and its output."""

    wall_s: float
    peak_rss_gb: float
    done: subprocess.CompletedProcess


def run_timed(command: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              name: str = "") -> TimedRun:
    """Run ``command`` under ``/usr/bin/time -v``; a failure stops the benchmark with the command's output tail."""
    done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name or command[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return TimedRun(seconds, rss_kb * 1024 / 1e9, done)  # GNU time's "kbytes" are KiB


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of equal keys as a markdown table, in the keys' order."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
