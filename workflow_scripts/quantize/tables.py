"""The quantization table of all folds' benchmarks, and its figure: no torch, so the table job is a data job."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.errors import InputError
from ..core.outputs import atomic_path

COLUMNS = ["variant", "device", "dtype", "size_mb", "batch_size", "latency_ms", "cells_per_s", "accuracy",
           "macro_f1", "macro_auc", "n_cells"]  # of each fold's benchmark table (quantization.py)
RUN_KEYS = ["experiment", "method", "fold"]


def relative_to_fp32(table: pd.DataFrame) -> pd.DataFrame:
    """Add size_vs_fp32 (size / fp32 size of the same run) and latency_change_vs_fp32_pct (vs fp32 on the
    same device and batch size); NaN where that fp32 row was not measured."""
    fp32 = table[table["variant"] == "fp32"]
    sizes = fp32.groupby(RUN_KEYS)["size_mb"].first().rename("fp32_size_mb").reset_index()
    latencies = fp32[[*RUN_KEYS, "device", "batch_size", "latency_ms"]].rename(
        columns={"latency_ms": "fp32_latency_ms"})
    merged = table.merge(sizes, on=RUN_KEYS, how="left").merge(
        latencies, on=[*RUN_KEYS, "device", "batch_size"], how="left")
    table = table.copy()
    table["size_vs_fp32"] = (merged["size_mb"] / merged["fp32_size_mb"]).to_numpy()
    table["latency_change_vs_fp32_pct"] = (100 * (merged["latency_ms"] / merged["fp32_latency_ms"] - 1)).to_numpy()
    return table


def collect_quantization(tables: list, output_csv: str | Path, output_png: str | Path) -> None:
    """Concatenate benchmark tables ([experiment, method, fold, path] each) into one long CSV with the
    ratios to fp32, and draw size vs macro F1 beside throughput at the largest batch size."""
    from .figures import plot_quantization

    keys = [(str(experiment), str(method), int(fold)) for experiment, method, fold, _ in tables]
    if not tables or len(set(keys)) != len(keys):
        raise InputError("quantization tables", "is empty or lists an (experiment, method, fold) twice",
                         "pass each fold's quantization.tsv once")
    frames = []
    for (experiment, method, fold), (*_, path) in zip(keys, tables):
        frame = pd.read_csv(path, sep="\t")
        missing = [column for column in COLUMNS if column not in frame.columns]
        if missing or frame.empty:
            raise InputError(str(path), f"is not a quantization benchmark table (lacks {missing or 'rows'})",
                             "re-run the quantize step for this fold")
        frames.append(frame[COLUMNS].assign(experiment=experiment, method=method, fold=fold))
    table = relative_to_fp32(pd.concat(frames, ignore_index=True)[[*RUN_KEYS, *COLUMNS]])
    with atomic_path(output_csv) as temporary:
        table.to_csv(temporary, index=False, float_format="%.6g")
    figure = plot_quantization(table)
    with atomic_path(output_png) as temporary:
        figure.savefig(temporary, dpi=150, format="png", bbox_inches="tight")
