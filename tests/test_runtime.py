"""The runtime table gathers every job's benchmark file."""

from __future__ import annotations

import pandas as pd
import pytest

from workflow_scripts.aggregate.runtime import (
    collect_runtime,
    per_rule,
    read_benchmarks,
)
from workflow_scripts.core.errors import InputError

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path, seconds, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{seconds * 0.9}\n")


def test_runtime_table_and_figure(tmp_path):
    benchmarks = tmp_path / "benchmarks"
    write_benchmark(benchmarks / "finetune_fold/pancreas/geneformer/fold_0.tsv", 40.0, 800.0)
    write_benchmark(benchmarks / "finetune_fold/pancreas/geneformer/fold_1.tsv", 30.0, 700.0)
    write_benchmark(benchmarks / "pretrain/pretrain.tsv", 150.0, 650.0)
    collect_runtime(benchmarks, tmp_path / "runtime.csv", tmp_path / "runtime.png")
    jobs = pd.read_csv(tmp_path / "runtime.csv")
    assert list(jobs["rule"]) == ["pretrain", "finetune_fold", "finetune_fold"]  # slowest first
    assert jobs.loc[1, "wildcards"] == "pancreas/geneformer/fold_0"
    assert jobs["cpu_seconds"].tolist() == pytest.approx([135.0, 36.0, 27.0])
    summary = per_rule(read_benchmarks(benchmarks))
    assert summary.loc["finetune_fold", "seconds"] == 70.0 and summary.loc["finetune_fold", "jobs"] == 2
    assert summary.loc["finetune_fold", "max_rss_mb"] == 800.0
    assert (tmp_path / "runtime.png").stat().st_size > 10_000


def test_empty_or_foreign_benchmarks_are_refused(tmp_path):
    with pytest.raises(InputError, match="no benchmark files"):
        read_benchmarks(tmp_path)
    (tmp_path / "rule").mkdir()
    (tmp_path / "rule" / "job.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="not a Snakemake benchmark file"):
        read_benchmarks(tmp_path)
