"""The quantization figure: weights size vs macro F1, and inference speed per variant and device."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core.style import method_colours


def plot_quantization(table: pd.DataFrame) -> Figure:
    """What each model variant costs and saves: weights size vs macro F1 (one point per fold's model,
    colour = variant, marker = device), beside median cells/s at each run's largest batch size with
    the size ratio and latency change vs fp32 on the same device (collect_quantization's long table)."""
    runs = ["experiment", "method", "fold"]
    largest = table[table["batch_size"] == table.groupby(runs)["batch_size"].transform("max")]
    colours = method_colours(list(dict.fromkeys(largest["variant"])))
    markers = {"cpu": "o", "cuda": "s"}
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    size_axis, speed_axis = figure.subplots(1, 2)
    fp32_f1 = largest.loc[largest["variant"] == "fp32", "macro_f1"].median()
    if not np.isnan(fp32_f1):
        size_axis.axhline(fp32_f1, color="grey", linestyle="--", linewidth=0.8, label="fp32 macro F1 (median)")
    for (variant, device), points in largest.groupby(["variant", "device"], sort=False):
        label = (f"{variant} ({device}): {points['size_vs_fp32'].median():.2f}× fp32 size, "
                 f"macro F1 {points['macro_f1'].median():.3f}")  # in the legend: variants often overlap
        size_axis.scatter(points["size_mb"], points["macro_f1"], color=colours[variant],
                          marker=markers.get(device, "^"), alpha=0.6, label=label)
    size_axis.set(xlabel="weights on disk (MB, safetensors)", ylabel="macro F1 on the held-out fold",
                  title="size vs macro F1 (one point per fold model)")
    size_axis.set_xlim(0, largest["size_mb"].max() * 1.1)
    size_axis.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(0.0, -0.15))

    summary = largest.groupby(["variant", "device"], sort=False)[
        ["cells_per_s", "latency_change_vs_fp32_pct"]].median()
    positions = np.arange(len(summary))[::-1]
    speed_axis.barh(positions, summary["cells_per_s"], color=[colours[variant] for variant, _ in summary.index])
    for position, ((variant, _), row) in zip(positions, summary.iterrows()):
        change = row["latency_change_vs_fp32_pct"]
        versus = "reference" if variant == "fp32" else "no fp32 on this device" if np.isnan(change) else \
            f"latency {change:+.0f}% vs fp32"
        speed_axis.annotate(f" {row['cells_per_s']:,.0f} cells/s, {versus}", (row["cells_per_s"], position),
                            va="center", fontsize=8)
    speed_axis.set_yticks(positions, [f"{variant} ({device})" for variant, device in summary.index])
    speed_axis.set_xlim(0, summary["cells_per_s"].max() * 1.9)
    batch_sizes = sorted(largest["batch_size"].unique())
    speed_axis.set(xlabel="cells per second (median over runs)",
                   title=f"throughput at batch size {', '.join(map(str, batch_sizes))}")
    figure.suptitle(f"Quantized and half-precision models: {largest.groupby(runs).ngroups} fine-tuned fold models")
    return figure
