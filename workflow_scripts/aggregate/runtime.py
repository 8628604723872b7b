"""Where the time went: every job's `benchmark:` file gathered into one table and one figure.

Snakemake writes one TSV per job under results/benchmarks/{rule}/{wildcards}.tsv (columns s,
h:m:s, max_rss, ..., cpu_time; max_rss in MB). The table keeps one row per job; the figure sums
seconds per rule, so a user sees which stage to shrink or move to a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core.errors import InputError
from ..core.outputs import atomic_path

BENCHMARK_COLUMNS = {"s": "seconds", "max_rss": "max_rss_mb", "cpu_time": "cpu_seconds"}


def read_benchmarks(benchmark_dir: str | Path) -> pd.DataFrame:
    """One row per job: rule, wildcards (the file's path below the rule), seconds, max RSS, CPU seconds."""
    benchmark_dir = Path(benchmark_dir)
    rows = []
    for path in sorted(benchmark_dir.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        missing = [column for column in BENCHMARK_COLUMNS if column not in table.columns]
        if missing or table.empty:
            raise InputError(str(path), f"is not a Snakemake benchmark file (lacks {missing or 'rows'})",
                             "delete it; the rule's next run writes it again")
        relative = path.relative_to(benchmark_dir).with_suffix("")
        last = table.iloc[-1]  # with --benchmark-repeats, the last repeat
        rows.append({"rule": relative.parts[0], "wildcards": "/".join(relative.parts[1:]),
                     **{name: float(last[column]) for column, name in BENCHMARK_COLUMNS.items()}})
    if not rows:
        raise InputError(str(benchmark_dir), "holds no benchmark files", "run the workflow first")
    jobs = pd.DataFrame(rows)
    for name in BENCHMARK_COLUMNS.values():
        jobs[name] = pd.to_numeric(jobs[name], errors="coerce")  # "NA" where the platform cannot measure
    return jobs.sort_values("seconds", ascending=False, ignore_index=True)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs, total and largest seconds, and peak memory per rule, slowest rule first."""
    grouped = jobs.groupby("rule")
    summary = pd.DataFrame({"jobs": grouped.size(), "seconds": grouped["seconds"].sum(),
                            "longest_job_seconds": grouped["seconds"].max(), "max_rss_mb": grouped["max_rss_mb"].max()})
    return summary.sort_values("seconds", ascending=False)


def plot_runtime(summary: pd.DataFrame) -> Figure:
    """Seconds per rule (bars, labelled with the job count) beside the peak memory of its largest job."""
    figure = Figure(figsize=(10, 0.35 * len(summary) + 1.5), layout="constrained")
    time_axis, memory_axis = figure.subplots(1, 2, sharey=True, width_ratios=[2, 1])
    positions = np.arange(len(summary))[::-1]
    time_axis.barh(positions, summary["seconds"], color="tab:blue")
    for position, seconds, jobs in zip(positions, summary["seconds"], summary["jobs"]):
        time_axis.annotate(f" {seconds:,.0f} s, {jobs} job{'s' * (jobs > 1)}", (seconds, position), va="center",
                           fontsize=8)
    time_axis.set(yticks=positions, yticklabels=summary.index, xlabel="seconds, summed over the rule's jobs")
    time_axis.set_xlim(0, summary["seconds"].max() * 1.35)
    memory_axis.barh(positions, summary["max_rss_mb"], color="tab:orange")
    memory_axis.set(xlabel="peak memory of one job (MB)")
    figure.suptitle(f"Where the time went: {summary['jobs'].sum()} jobs, {summary['seconds'].sum():,.0f} s in all")
    return figure


def collect_runtime(benchmark_dir: str | Path, output_csv: str | Path, output_png: str | Path) -> None:
    """Write results/tables/runtime.csv (one row per job) and the per-rule figure."""
    jobs = read_benchmarks(benchmark_dir)
    with atomic_path(output_csv) as temporary:
        jobs.to_csv(temporary, index=False, float_format="%.3f")
    figure = plot_runtime(per_rule(jobs))
    with atomic_path(output_png) as temporary:
        figure.savefig(temporary, dpi=150, format="png")
