"""The benchmark scripts' shared pieces: peak memory and wall time from /usr/bin/time, the printed table."""

import sys

import pytest

from asr_finetune.tools.benchmarking import markdown_table, run_timed

from conftest import require


def test_a_timed_command_reports_its_peak_memory_and_a_failure_names_it() -> None:
    require("/usr/bin/time")
    timing = run_timed([sys.executable, "-c", "x = bytearray(300_000_000); x[::4096] = b'1' * len(x[::4096])"])
    assert 0.3 <= timing.peak_rss_gb < 1.0 and timing.wall_s > 0
    with pytest.raises(SystemExit, match="reference failed"):
        run_timed([sys.executable, "-c", "raise SystemExit(3)"], name="reference")


def test_table_rows_keep_their_columns_in_order() -> None:
    assert markdown_table([{"run": "a", "wer": 0.5}, {"run": "b", "wer": 0.25}]).splitlines() == [
        "| run | wer |", "|---|---|", "| a | 0.5 |", "| b | 0.25 |",
    ]  # fmt: skip
