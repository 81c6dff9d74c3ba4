"""Where training time goes: audio seconds per wall second, padding, and time spent waiting on the loader."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class ThroughputMeter:
    """Accumulates per-batch audio and padding, and loader wait time; reports per logging window and in total."""

    audio_seconds: float = 0.0
    padded_seconds: float = 0.0
    padding_fraction_sum: float = 0.0
    batches: int = 0
    wait_seconds: float = 0.0
    bad_rows_skipped: int = 0
    started: float | None = None
    _window: tuple[float, float, float, int, float] | None = None

    def add_batch(self, audio_seconds: float, padded_seconds: float, skipped: int = 0) -> None:
        self.bad_rows_skipped += skipped
        self.audio_seconds += audio_seconds
        self.padded_seconds += padded_seconds
        self.padding_fraction_sum += 1.0 - audio_seconds / padded_seconds if padded_seconds > 0 else 0.0
        self.batches += 1

    def add_wait(self, seconds: float) -> None:
        """Time spent waiting for batches. The clock starts when the first batch arrives, so loader start-up
        and model set-up do not dilute the steady-state figures."""
        if self.started is None:
            self.started = time.perf_counter()
            return
        self.wait_seconds += seconds

    def _snapshot(self) -> tuple[float, float, float, int, float]:
        return (time.perf_counter(), self.audio_seconds, self.padding_fraction_sum, self.batches, self.wait_seconds)

    def window(self) -> dict[str, float]:
        """Figures since the previous call (the first window starts when the meter was made)."""
        now = self._snapshot()
        before = self._window or (self.started or now[0], 0.0, 0.0, 0, 0.0)
        self._window = now
        return _figures(
            now[0] - before[0], now[1] - before[1], now[2] - before[2], now[3] - before[3], now[4] - before[4]
        )

    def totals(self) -> dict[str, float]:
        """Figures over the whole run (zeros when no batch was trained, e.g. a rerun of a finished run)."""
        figures = _figures(
            time.perf_counter() - self.started if self.started is not None else 0.0,
            self.audio_seconds,
            self.padding_fraction_sum,
            self.batches,
            self.wait_seconds,
        )
        return {**figures, "bad_rows_skipped": self.bad_rows_skipped}


def _figures(wall: float, audio: float, padding_sum: float, batches: int, wait: float) -> dict[str, float]:
    return {
        "audio_seconds_per_second": round(audio / wall, 3) if wall > 0 else 0.0,
        "padding_fraction": round(padding_sum / batches, 4) if batches else 0.0,
        "loader_wait_share": round(wait / wall, 4) if wall > 0 else 0.0,
    }
