"""What the benchmark scripts share: a command timed under /usr/bin/time, a launch whose processes' memory is
sampled one by one, and a markdown table."""

from __future__ import annotations

import re
import subprocess
import threading
import time
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


def run_sampling_workers(command: Sequence[str], marker: str, env: dict[str, str] | None = None,
                         name: str = "", interval_s: float = 0.2) -> tuple[float, list[float]]:
    """Run a multi-process launch (torchrun) and sample the resident memory of each process whose command line holds
    ``marker`` (the workers, not the launcher); returns the wall seconds and each worker's peak RSS in GB, by PID
    order. A failure stops the benchmark with the output tail."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    launcher = psutil.Process(proc.pid)
    peaks: dict[int, int] = {}
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            workers = [child for child in launcher.children(recursive=True) if marker in " ".join(child.cmdline())]
            for worker in workers:
                peaks[worker.pid] = max(peaks.get(worker.pid, 0), worker.memory_info().rss)
        except psutil.Error:  # a process ended between listing and reading it
            pass
        time.sleep(interval_s)
    reader.join()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{name or command[0]} failed:\n{''.join(lines)[-4000:]}")
    return wall, [peaks[pid] / 1e9 for pid in sorted(peaks)]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of equal keys as a markdown table, in the keys' order."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
