"""The training-size sweep's table and figure: a gene task's AUC against the number of training cells
(Geneformer's Figs. 11-12), the baselines trained on all training cells as reference lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core.metrics import format_mean_sd
from ..core.outputs import atomic_path
from ..core.style import method_colours, save_figure

METRIC = "macro_auc"  # the documents report the gene tasks' ROC AUC


def _training_cells(cells_tsv: str | Path) -> int:
    cells = pd.read_csv(cells_tsv, sep="\t")
    return int((cells["role"] == "train").sum())


def sweep_table(runs: list[tuple[str, str | Path, str | Path]]) -> pd.DataFrame:
    """One row per run x method: training cells, the metric's mean, SD and 'mean ± SD' over folds.
    runs[0] is the swept experiment on all training cells: its methods that no smaller run repeats
    are the reference (baselines); the others are swept."""
    rows = []
    for experiment, summary_csv, cells_tsv in runs:
        summary = pd.read_csv(summary_csv)
        for record in summary.to_dict("records"):
            rows.append({"experiment": experiment, "n_training_cells": _training_cells(cells_tsv),
                         "method": record["method"], f"{METRIC}_mean": record[f"{METRIC}_mean"],
                         f"{METRIC}_sd": record[f"{METRIC}_sd"], "n_folds": record["n_folds"]})
    table = pd.DataFrame(rows)
    swept = set(table.loc[table["experiment"] != runs[0][0], "method"])
    table.insert(3, "role", np.where(table["method"].isin(swept), "swept", "reference (all training cells)"))
    table[METRIC] = [format_mean_sd(mean, sd) for mean, sd in zip(table[f"{METRIC}_mean"], table[f"{METRIC}_sd"])]
    return table.sort_values(["role", "method", "n_training_cells"], ascending=[False, True, False],
                             ignore_index=True)


def sweep_figure(table: pd.DataFrame, experiment: str) -> Figure:
    """Swept methods: mean ± SD over folds against training cells (log axis); reference methods: lines."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    colours = method_colours(list(dict.fromkeys(table["method"])))
    for method, rows in table.groupby("method", sort=False):
        if rows["role"].iloc[0] == "swept":
            rows = rows.sort_values("n_training_cells")
            axes.errorbar(rows["n_training_cells"], rows[f"{METRIC}_mean"], yerr=rows[f"{METRIC}_sd"].fillna(0),
                          marker="o", capsize=3, color=colours[method], label=method)
        else:
            axes.axhline(rows[f"{METRIC}_mean"].iloc[0], linestyle="--", color=colours[method],
                         label=f"{method} (all cells)")
    axes.set_xscale("log")
    axes.set_xlabel("training cells")
    axes.set_ylabel("ROC AUC (mean ± SD over folds)")
    axes.set_title(f"{experiment}: AUC against training cells")
    axes.legend(fontsize="small")
    return figure


def write_training_size_sweep(runs: list[tuple[str, str | Path, str | Path]], output_csv: str | Path,
                              output_md: str | Path, output_dir: str | Path) -> None:
    """training_size.csv/.md and figures/training_size.png/.pdf."""
    table = sweep_table(runs)
    with atomic_path(output_csv) as temporary:
        table.to_csv(temporary, index=False)
    shown = table[["n_training_cells", "method", "role", METRIC, "n_folds"]]
    with atomic_path(output_md) as temporary:
        temporary.write_text(f"## {runs[0][0]}: ROC AUC against training cells\n\n{shown.to_markdown(index=False)}\n")
    save_figure(sweep_figure(table, runs[0][0]), Path(output_dir), "training_size")
