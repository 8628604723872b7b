"""Determinism (issue 9.3): two runs of the test preset with the same config, in two copies of the
workflow, give byte-identical summary tables on the CPU.

Timings are measurements, not results: the quantization table's latency and throughput columns,
and the reported-vs-reproduced row built from them, are compared without those values; the runtime
table (every job's seconds and memory) is not compared.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path

import pandas as pd
import pytest
from conftest import TEST_PRESET, snakemake

SUMMARY_TABLES = ("results/tables/*.csv", "results/*/summary.csv", "results/*/per_class.csv")
MEASUREMENTS = {"results/tables/runtime.csv"}  # every job's seconds and memory: nothing in it is a result
TIMED_COLUMNS = {"results/tables/quantization.csv": ["latency_ms", "cells_per_s", "latency_change_vs_fp32_pct"]}
TIMED_ROWS = {"results/tables/reported_vs_reproduced.csv": ("metric", "int8 vs fp32 latency")}


def summary_tables(workdir: Path) -> list[str]:
    names = {str(path.relative_to(workdir)) for pattern in SUMMARY_TABLES for path in workdir.glob(pattern)}
    return sorted(names - MEASUREMENTS)


def without_timings(name: str, content: bytes) -> bytes:
    """The table as written, less its measured timings (unchanged for every other table)."""
    if name not in TIMED_COLUMNS and name not in TIMED_ROWS:
        return content
    table = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
    table = table.drop(columns=TIMED_COLUMNS.get(name, []))
    if name in TIMED_ROWS:
        column, value = TIMED_ROWS[name]
        table = table[table[column] != value]
    return table.to_csv(index=False).encode()


@pytest.mark.slow
def test_two_runs_of_the_test_preset_give_identical_summary_tables(preset_run, workdir):
    result = snakemake(workdir, *TEST_PRESET, timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
    names = summary_tables(preset_run)
    assert names == summary_tables(workdir)
    assert {"results/tables/all_experiments.csv", "results/tables/reported_vs_reproduced.csv",
            "results/pancreas_celltype/summary.csv", "results/dosage_sensitivity/summary.csv"} <= set(names)
    for name, (column, value) in TIMED_ROWS.items():  # the timed row exists, so it is not silently compared
        assert value in pd.read_csv(preset_run / name, dtype=str)[column].tolist(), name
    differing = {}
    for name in names:
        first = without_timings(name, (preset_run / name).read_bytes())
        second = without_timings(name, (workdir / name).read_bytes())
        if first != second:
            differing[name] = "".join(difflib.unified_diff(first.decode().splitlines(True),
                                                           second.decode().splitlines(True), n=0))[:2000]
    assert not differing, "\n".join(f"{name}:\n{diff}" for name, diff in differing.items())
