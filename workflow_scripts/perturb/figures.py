"""Figures of the in silico perturbation: shift distributions, top genes, combinations, planted targets."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..core import truths
from ..core.errors import InputError
from ..core.style import save_figure
from .tables import (
    COMBINATION,
    JOIN,
    combination_row,
    gene_shifts_of,
    pair_gene_synergy,
    targets_against_others,
)

PERTURBATION_ROLE_COLOURS = {"driver": "tab:red", "pair member": "tab:purple", "control": "tab:green",
                             "": "tab:grey"}


def planted_roles(truth: dict) -> dict[str, str]:
    """Ensembl ID -> planted role (driver, pair member, control) from a simulator truth file's contents."""
    roles = {gene: "control" for gene in truths.CONTROL_GENES.read(truth, default=[])}
    roles.update({gene: "pair member" for gene in truths.PAIR_GENES.read(truth, default=[])})
    if truths.DRIVER.held_by(truth):
        roles[truths.DRIVER_GENE.read(truth)] = "driver"
    return roles


def analysis_title(table: pd.DataFrame) -> str:
    """"name (direction)" of one perturbation run's table."""
    analysis, direction = table["analysis"].iloc[0], table["direction"].iloc[0]
    return f"{analysis} ({direction})" if analysis and analysis != direction else direction


def perturbation_metric(table: pd.DataFrame) -> str:
    """The goal-state shift where the run had a goal state, else the cell shift (1 - cosine)."""
    return "goal_shift" if table["goal_shift"].notna().any() else "cell_shift"


def plot_shift_distribution(tables: list[pd.DataFrame], roles: dict[str, str]) -> Figure:
    """Per direction: histograms of the per-gene mean shift of the tested genes and of the null
    (random) genes on shared bins, planted genes marked by vertical lines."""
    figure = Figure(figsize=(5.2 * len(tables), 3.8), layout="constrained")
    axes = figure.subplots(1, len(tables), squeeze=False).ravel()
    for axis, table in zip(axes, tables):
        metric = perturbation_metric(table)
        tested, null = (table.loc[table["kind"] == kind, metric].dropna() for kind in ("gene", "random"))
        bins = np.histogram_bin_edges(pd.concat([tested, null]), bins=30)
        axis.hist(tested, bins=bins, alpha=0.6, density=True, color="tab:blue", label=f"tested genes ({len(tested)})")
        axis.hist(null, bins=bins, alpha=0.6, density=True, color="tab:grey", label=f"random genes ({len(null)})")
        planted = table[(table["kind"] == "gene") & table["genes"].isin(list(roles))]
        for gene, value in zip(planted["genes"], planted[metric]):
            axis.axvline(value, color=PERTURBATION_ROLE_COLOURS[roles[gene]], linewidth=1, alpha=0.8)
        for role in dict.fromkeys(roles[gene] for gene in planted["genes"]):
            axis.plot([], [], color=PERTURBATION_ROLE_COLOURS[role], label=role)
        start, goal = table["start_state"].iloc[0], table["goal_state"].iloc[0]
        toward = f", toward {goal}" if metric == "goal_shift" else ""
        axis.set(xlabel=f"{metric.replace('_', ' ')} per gene (mean over cells)", ylabel="density",
                 title=f"{analysis_title(table)} in {start}{toward}")
        axis.legend(fontsize=7, frameon=False)
    figure.suptitle("In silico perturbation: shifts of tested vs random genes")
    return figure


def plot_top_perturbed_genes(tables: list[pd.DataFrame], roles: dict[str, str], top_n: int = 20) -> Figure:
    """Per direction: the top_n tested genes by shift (bars coloured by planted role, * where
    FDR < 0.05 against the random genes)."""
    figure = Figure(figsize=(5.6 * len(tables), 0.28 * top_n + 1.6), layout="constrained")
    axes = figure.subplots(1, len(tables), squeeze=False).ravel()
    for axis, table in zip(axes, tables):
        metric = perturbation_metric(table)
        top = table[table["kind"] == "gene"].nlargest(top_n, metric)[::-1]
        colours = [PERTURBATION_ROLE_COLOURS[roles.get(gene, "")] for gene in top["genes"]]
        bars = axis.barh(np.arange(len(top)), top[metric], color=colours)
        labels = ["*" if fdr < 0.05 else "" for fdr in top[f"fdr_{metric}"].fillna(1.0)]
        axis.bar_label(bars, labels=labels, fontsize=8, padding=1)
        axis.set_yticks(np.arange(len(top)), top["genes"], fontsize=7)
        axis.axvline(table[f"{metric}_null_mean"].iloc[0], color="black", linestyle="--", linewidth=0.8,
                     label="random genes (mean)")
        axis.set(xlabel=metric.replace("_", " "), title=f"{analysis_title(table)}: top {len(top)} genes")
        handles = [matplotlib.patches.Patch(color=PERTURBATION_ROLE_COLOURS[role], label=role)
                   for role in dict.fromkeys(roles.get(gene, "") for gene in top["genes"]) if role]
        axis.legend(handles=[*axis.get_legend_handles_labels()[0], *handles], fontsize=7, frameon=False,
                    loc="lower right")
    figure.suptitle("In silico perturbation: strongest genes (* FDR < 0.05 vs random genes)")
    return figure


def plot_combination_effects(tables: list[pd.DataFrame]) -> Figure:
    """Per direction and combination: each member's single shift and their sum beside the joint
    shift, over the cells where all were perturbed (synergy = joint - sum)."""
    panels = [(table, row) for table in tables for _, row in table[table["kind"] == COMBINATION].iterrows()]
    figure = Figure(figsize=(max(4.5, 3.6 * len(panels)), 3.8), layout="constrained")
    if not panels:
        figure.text(0.5, 0.5, "no combinations were perturbed", ha="center", va="center")
        return figure
    axes = figure.subplots(1, len(panels), squeeze=False).ravel()
    for axis, (table, row) in zip(axes, panels):
        metric = perturbation_metric(table)
        prefix = "goal" if metric == "goal_shift" else "cell"
        members = row["genes"].split(JOIN)
        singles = [float(value) for value in str(row[f"member_{prefix}_shifts"]).split(";")] \
            if isinstance(row[f"member_{prefix}_shifts"], str) else [np.nan] * len(members)
        values = singles + [float(np.sum(singles)), float(row[metric])]
        names = members + ["sum of singles", "joint"]
        colours = ["tab:blue"] * len(members) + ["tab:grey", "tab:orange"]
        axis.bar(np.arange(len(values)), values, color=colours)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(np.arange(len(values)), names, rotation=30, ha="right", fontsize=7)
        column = "goal_synergy" if prefix == "goal" else "synergy"
        synergy = row[column]
        axis.set(ylabel=metric.replace("_", " "),
                 title=f"{analysis_title(table)}: {prefix} shift synergy {synergy:+.3g}\n"
                       f"({int(row['n_cells'])} cells; {row[f'{column}_percentile']:.0f}th percentile of random pairs)")
    figure.suptitle("In silico perturbation: combinations vs their members")
    return figure


def plot_target_shifts(tables: list[pd.DataFrame], gene_shifts: list[pd.DataFrame], truth: dict) -> Figure:
    """Per analysis (columns), like the source documents' target figures: the per-gene shifts of the
    driver's targets and of the other genes when the driver is perturbed, the same for the pair's
    co-bound targets when the pair is, and each gene's pair synergy (joint minus the sum of the
    single shifts); genes that kept their position only (perturb's mean_shift_unmoved)."""
    driver, driver_targets = truths.DRIVER_GENE.read(truth), truths.DRIVER_TARGETS.read(truth)
    pair_genes, pair_targets = truths.PAIR_GENES.read(truth), truths.PAIR_TARGETS.read(truth)
    figure = Figure(figsize=(4.2 * len(tables), 8.4), layout="constrained")
    axes = figure.subplots(3, len(tables), squeeze=False)
    for column, (table, shifts) in enumerate(zip(tables, gene_shifts)):
        pair_row = combination_row(table, pair_genes)
        pair_label = pair_row["genes"] if pair_row is not None else JOIN.join(pair_genes)
        panels = [(gene_shifts_of(shifts, driver), driver_targets, "driver perturbed: gene shift"),
                  (gene_shifts_of(shifts, pair_label), pair_targets, "pair perturbed: gene shift"),
                  (pair_gene_synergy(shifts, pair_label), pair_targets, "pair synergy per gene")]
        for axis, (values, targets, label) in zip(axes[:, column], panels):
            is_target = values.index.isin(targets)
            groups = [values[is_target].to_numpy(), values[~is_target].to_numpy()]
            names = [f"targets ({len(groups[0])})", f"other genes ({len(groups[1])})"]
            title = f"{analysis_title(table)}\n" if axis is axes[0, column] else ""
            if not all(len(group) for group in groups):
                axis.text(0.5, 0.5, "no target kept its position", ha="center", va="center", transform=axis.transAxes)
                axis.set_axis_off()
                axis.set_title(title, fontsize=9)
                continue
            axis.boxplot(groups, showfliers=False, widths=0.5)
            jitter = np.random.default_rng(0)
            for place, (group, colour) in enumerate(zip(groups, ("tab:red", "tab:grey")), start=1):
                axis.scatter(place + jitter.uniform(-0.15, 0.15, len(group)), group, s=6, alpha=0.5, color=colour)
            axis.set_xticks([1, 2], names, fontsize=8)
            axis.axhline(0, color="black", linewidth=0.5)
            p_value = targets_against_others(values, targets)[-1]
            axis.set_ylabel(label)
            axis.set_title(f"{title}targets > others: one-sided p = {p_value:.2g}", fontsize=9)
    figure.suptitle("In silico perturbation: planted targets vs other genes (positions unchanged)")
    return figure


def plot_perturbation(results_tsvs: list[str], output_dir: str | Path, truth_json: str | None = None,
                      gene_shifts_tsvs: list[str] | None = None, top_n: int = 20) -> list[Path]:
    """Write perturbation_shifts, perturbation_top_genes and perturbation_combinations (PNG, PDF)
    from perturb.run_perturbation tables (one per analysis); planted genes marked when truth_json
    is given, and with the gene shift tables (same order) also perturbation_targets."""
    if not results_tsvs:
        raise InputError("results_tsvs", "is empty", "pass the perturbation results of at least one direction")
    if gene_shifts_tsvs and len(gene_shifts_tsvs) != len(results_tsvs):
        raise InputError("gene_shifts_tsvs", f"{len(gene_shifts_tsvs)} files for {len(results_tsvs)} results files",
                         "give one gene shift file per results file, in the same order")
    tables = [pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]) for path in results_tsvs]
    truth = json.loads(Path(truth_json).read_text()) if truth_json else {}
    roles = planted_roles(truth)
    output_dir = Path(output_dir)
    paths = [
        *save_figure(plot_shift_distribution(tables, roles), output_dir, "perturbation_shifts"),
        *save_figure(plot_top_perturbed_genes(tables, roles, top_n), output_dir, "perturbation_top_genes"),
        *save_figure(plot_combination_effects(tables), output_dir, "perturbation_combinations"),
    ]
    if "driver" in truth and gene_shifts_tsvs:
        shifts = [pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]) for path in gene_shifts_tsvs]
        figure = plot_target_shifts(tables, shifts, truth)
        paths += save_figure(figure, output_dir, "perturbation_targets")
    return paths
