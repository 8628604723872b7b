"""Figures comparing methods over folds: mean ROC with SD band, confusion matrices, per-class F1.

Built on matplotlib Figure objects, never pyplot: no display and no global figure state, and
savefig renders PNG with the Agg canvas and PDF with the PDF canvas. Each figure is saved as PNG
(dpi 150) and PDF. A method keeps one colour in every figure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from .errors import InputError
from .evaluate import (
    Predictions,
    classes_with_roc,
    fold_metrics,
    format_mean_sd,
    read_predictions,
    roc_class_indices,
)
from .io_utils import atomic_path
from .perturbation_tables import (
    COMBINATION,
    JOIN,
    combination_row,
    gene_shifts_of,
    pair_gene_synergy,
    targets_against_others,
)

ROC_GRID = np.linspace(0, 1, 100)  # Geneformer's mean ROC: each fold interpolated on 100 FPR points
DPI = 150
ROC_PANELS_PER_ROW = 4


def load_method_folds(
    predictions: list[tuple[str, int, str | Path]],
) -> tuple[dict[str, list[Predictions]], list[str]]:
    """Predictions grouped by method (order given, folds ascending), checked for one class order."""
    keys = [(method, int(fold)) for method, fold, _ in predictions]
    if not predictions or len(set(keys)) != len(keys):
        raise InputError(
            "figure predictions", "is empty or lists a (method, fold) twice", "pass each fold's predictions once"
        )
    by_method: dict[str, list[Predictions]] = {}
    for method, _, path in sorted(predictions, key=lambda entry: int(entry[1])):
        by_method.setdefault(method, []).append(read_predictions(path))
    class_orders = {tuple(fold.classes) for folds in by_method.values() for fold in folds}
    if len(class_orders) != 1:
        raise InputError(
            "figure predictions", f"files disagree on classes: {class_orders}", "plot one experiment's folds"
        )
    method_order = list(dict.fromkeys(method for method, _, _ in predictions))
    return {method: by_method[method] for method in method_order}, list(class_orders.pop())


def method_colours(methods: list[str]) -> dict[str, tuple]:
    """One tab10 colour per method, fixed by the order methods are given."""
    palette = matplotlib.colormaps["tab10"].colors
    return {method: palette[position % len(palette)] for position, method in enumerate(methods)}


def save_figure(figure: Figure, output_dir: Path, stem: str) -> list[Path]:
    """Write the figure as PNG and PDF, each atomically."""
    paths = [output_dir / f"{stem}.png", output_dir / f"{stem}.pdf"]
    for path in paths:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=DPI, bbox_inches="tight")
    return paths


def mean_roc(folds: list[Predictions], class_index: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Mean and SD (ddof=1) of the folds' ROC curves on ROC_GRID, and each fold's AUC.

    Only folds where the class's ROC is defined (class present, not every cell) contribute.
    """
    curves, aucs = [], []
    for fold in folds:
        if class_index not in classes_with_roc(fold):
            continue
        is_class = fold.true_labels == fold.classes[class_index]
        false_positive_rate, true_positive_rate, _ = roc_curve(is_class, fold.probabilities[:, class_index])
        curve = np.interp(ROC_GRID, false_positive_rate, true_positive_rate)
        curve[0] = 0.0
        curves.append(curve)
        aucs.append(roc_auc_score(is_class, fold.probabilities[:, class_index]))
    undefined = np.full(len(ROC_GRID), np.nan)
    if not curves:
        return undefined, undefined, aucs
    sd_curve = np.std(curves, axis=0, ddof=1) if len(curves) > 1 else undefined
    return np.mean(curves, axis=0), sd_curve, aucs


def plot_roc(
    experiment: str, by_method: dict[str, list[Predictions]], classes: list[str], colours: dict[str, tuple]
) -> Figure:
    """Small multiples, one panel per class (one for a binary task), each overlaying every method."""
    panel_classes = roc_class_indices(len(classes))
    n_columns = min(len(panel_classes), ROC_PANELS_PER_ROW)
    n_rows = math.ceil(len(panel_classes) / n_columns)
    figure = Figure(figsize=(3.6 * n_columns, 3.4 * n_rows + 0.5), layout="constrained")
    axes = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for axis, class_index in zip(axes, panel_classes):
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
        for method, folds in by_method.items():
            mean_curve, sd_curve, aucs = mean_roc(folds, class_index)
            auc_sd = np.std(aucs, ddof=1) if len(aucs) > 1 else np.nan
            auc_mean = np.mean(aucs) if aucs else np.nan
            label = f"{method} (AUC {format_mean_sd(auc_mean, auc_sd)}, {len(aucs)} folds)"
            axis.plot(ROC_GRID, mean_curve, color=colours[method], linewidth=1.5, label=label)
            lower, upper = np.clip(mean_curve - sd_curve, 0, 1), np.clip(mean_curve + sd_curve, 0, 1)
            axis.fill_between(ROC_GRID, lower, upper, color=colours[method], alpha=0.2, linewidth=0)
        negative = classes[0] if len(classes) == 2 else "rest"
        axis.set(title=f"{classes[class_index]} vs {negative}", xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
        axis.set(xlabel="False positive rate", ylabel="True positive rate")
        axis.legend(loc="lower right", fontsize=6.5)
    for axis in axes[len(panel_classes) :]:
        axis.set_visible(False)
    figure.suptitle(f"{experiment}: ROC, mean ± SD over folds")
    return figure


def plot_confusion(experiment: str, metrics_by_method: dict[str, list[dict]], classes: list[str]) -> Figure:
    """Row-normalized confusion matrix summed over folds, one annotated panel per method."""
    panel_size = max(3.5, 0.55 * len(classes))
    annotation_size = 8 if len(classes) <= 8 else 6
    figure = Figure(figsize=(panel_size * len(metrics_by_method) + 1.2, panel_size + 0.8), layout="constrained")
    axes = figure.subplots(1, len(metrics_by_method), squeeze=False).ravel()
    for axis, (method, fold_scores) in zip(axes, metrics_by_method.items()):
        counts = np.sum([scores["confusion"] for scores in fold_scores], axis=0)
        row_totals = counts.sum(axis=1, keepdims=True)
        fractions = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
        image = axis.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
        for (row, column), value in np.ndenumerate(fractions):
            colour = "white" if value > 0.5 else "black"
            axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=annotation_size, color=colour)
        axis.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        axis.set_yticks(range(len(classes)), classes, fontsize=7)
        axis.set(title=f"{method} ({int(counts.sum())} cells)", xlabel="Predicted label", ylabel="True label")
    figure.colorbar(image, ax=list(axes), shrink=0.8, label="Fraction of true class")
    figure.suptitle(f"{experiment}: confusion matrix summed over folds (rows normalized)")
    return figure


def fold_f1_table(fold_scores: list[dict], classes: list[str]) -> pd.DataFrame:
    """Per-class F1, one row per fold; NaN where the fold lacks the class (F1 undefined, not 0)."""
    rows = [
        {label: per_class[label]["f1"] if per_class[label]["support"] > 0 else np.nan for label in classes}
        for per_class in (scores["per_class"] for scores in fold_scores)
    ]
    return pd.DataFrame(rows, columns=classes)


def plot_per_class_f1(
    experiment: str, metrics_by_method: dict[str, list[dict]], classes: list[str], colours: dict[str, tuple]
) -> Figure:
    """Grouped bars: per-class F1 mean over the folds containing the class, SD (ddof=1) error bars."""
    n_methods = len(metrics_by_method)
    bar_width = 0.8 / n_methods
    positions = np.arange(len(classes))
    figure = Figure(figsize=(max(6.0, 0.25 * len(classes) * n_methods + 2), 4.5), layout="constrained")
    axis = figure.subplots()
    for offset, (method, fold_scores) in enumerate(metrics_by_method.items()):
        f1 = fold_f1_table(fold_scores, classes)
        axis.bar(
            positions + (offset - (n_methods - 1) / 2) * bar_width,
            f1.mean().to_numpy(),
            bar_width,
            yerr=f1.std(ddof=1).fillna(0).to_numpy(),
            capsize=2,
            color=colours[method],
            label=method,
        )
    axis.set_xticks(positions, classes, rotation=45, ha="right")
    axis.set(ylim=(0, 1.05), xlabel="Class", ylabel="F1 (mean ± SD over folds)", title=f"{experiment}: per-class F1")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def plot_experiment(
    experiment: str, predictions: list[tuple[str, int, str | Path]], output_dir: str | Path
) -> list[Path]:
    """Write roc, confusion and per_class_f1 figures (PNG and PDF) for one experiment; return their paths."""
    by_method, classes = load_method_folds(predictions)
    metrics_by_method = {method: [fold_metrics(fold) for fold in folds] for method, folds in by_method.items()}
    colours = method_colours(list(by_method))
    output_dir = Path(output_dir)
    return [
        *save_figure(plot_roc(experiment, by_method, classes, colours), output_dir, "roc"),
        *save_figure(plot_confusion(experiment, metrics_by_method, classes), output_dir, "confusion"),
        *save_figure(plot_per_class_f1(experiment, metrics_by_method, classes, colours), output_dir, "per_class_f1"),
    ]


def plot_relative_change(experiment: str, summary_csv: str | Path, reference_method: str,
                         output_dir: str | Path) -> list[Path]:
    """% change of each method's mean accuracy, macro F1 and macro AUC relative to `reference_method`
    (the layout of the Delft thesis' Figures 3 and 7). Writes relative_change.png/.pdf."""
    summary = pd.read_csv(summary_csv).set_index("method")
    if reference_method not in summary.index:
        raise InputError(f"{summary_csv}", f"reference method '{reference_method}' not in the summary",
                         f"set reference_method to one of {list(summary.index)}")
    metrics = {"accuracy_mean": "accuracy", "macro_f1_mean": "macro F1", "macro_auc_mean": "macro AUC"}
    others = [method for method in summary.index if method != reference_method]
    change = 100 * (summary.loc[others, list(metrics)] / summary.loc[reference_method, list(metrics)] - 1)
    figure = Figure(figsize=(max(6.0, 1.2 * len(others) + 2), 4.2))
    axes = figure.subplots()
    width = 0.8 / len(metrics)
    positions = np.arange(len(others))
    for index, (column, label) in enumerate(metrics.items()):
        bars = axes.bar(positions + (index - 1) * width, change[column], width, label=label)
        axes.bar_label(bars, fmt="%+.1f", fontsize=7, padding=2)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(positions, others, rotation=30, ha="right")
    axes.set_ylabel(f"% change vs {reference_method}")
    axes.set_title(f"{experiment}: each strategy relative to {reference_method} (mean over folds)")
    axes.legend(frameon=False)
    return save_figure(figure, Path(output_dir), "relative_change")


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


MAX_LEGEND_CATEGORIES = 30


def category_colours(categories: list[str]) -> dict[str, tuple]:
    """tab10 / tab20 colours for up to 20 categories, evenly spaced turbo colours beyond."""
    if len(categories) <= 20:
        palette = matplotlib.colormaps["tab10" if len(categories) <= 10 else "tab20"].colors
    else:
        palette = [tuple(colour) for colour in matplotlib.colormaps["turbo"](np.linspace(0, 1, len(categories)))]
    return dict(zip(categories, palette))


def plot_umap_grid(umaps: dict[str, np.ndarray],
                   rows: list[tuple[str, dict[str, np.ndarray], dict[str, str]]], seed: int = 0) -> Figure:
    """UMAPs side by side: one column per embedding (`umaps`: name -> cells x 2), one row per colouring
    (colour_by, name -> category per cell, name -> panel title). A category keeps one colour across a
    row; cells are drawn in a seeded random order so no category hides another."""
    names = list(umaps)
    figure = Figure(figsize=(4.2 * len(names) + 2.0, 4.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(names), squeeze=False)
    for row_axes, (colour_by, categories_by_name, titles) in zip(axes, rows):
        categories = sorted(set().union(*(np.unique(categories_by_name[name]).tolist() for name in names)))
        colours = category_colours(categories)
        for axis, name in zip(row_axes, names):
            coordinates, categories_of_cells = umaps[name], categories_by_name[name]
            order = np.random.default_rng(seed).permutation(len(coordinates))
            codes = pd.Categorical(categories_of_cells[order], categories=categories).codes
            palette = np.array([colours[category] for category in categories])
            axis.scatter(coordinates[order, 0], coordinates[order, 1], c=palette[codes],
                         s=float(np.clip(3e4 / len(coordinates), 1, 20)), linewidths=0, rasterized=True)
            axis.set(xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2")
            axis.set_title(titles[name], fontsize=9)
        if len(categories) <= MAX_LEGEND_CATEGORIES:
            handles = [matplotlib.lines.Line2D([], [], marker="o", linestyle="", color=colours[category],
                                               label=category) for category in categories]
            row_axes[-1].legend(handles=handles, title=colour_by, fontsize=7, title_fontsize=8, frameon=False,
                                loc="center left", bbox_to_anchor=(1.02, 0.5))
        else:
            row_axes[-1].annotate(f"{colour_by}: {len(categories)} categories", (1.02, 0.5),
                                  xycoords="axes fraction", va="center", fontsize=8)
    return figure


PERTURBATION_ROLE_COLOURS = {"driver": "tab:red", "pair member": "tab:purple", "control": "tab:green",
                             "": "tab:grey"}


def planted_roles(truth: dict) -> dict[str, str]:
    """Ensembl ID -> planted role (driver, pair member, control) from a simulator truth file's contents."""
    roles = {gene: "control" for gene in truth.get("control_genes", [])}
    roles.update({gene: "pair member" for gene in truth.get("cooperating_pair", {}).get("genes", [])})
    if "driver" in truth:
        roles[truth["driver"]["gene"]] = "driver"
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
    driver, pair = truth["driver"], truth["cooperating_pair"]
    figure = Figure(figsize=(4.2 * len(tables), 8.4), layout="constrained")
    axes = figure.subplots(3, len(tables), squeeze=False)
    for column, (table, shifts) in enumerate(zip(tables, gene_shifts)):
        pair_row = combination_row(table, pair["genes"])
        pair_label = pair_row["genes"] if pair_row is not None else JOIN.join(pair["genes"])
        panels = [(gene_shifts_of(shifts, driver["gene"]), driver["target_genes"], "driver perturbed: gene shift"),
                  (gene_shifts_of(shifts, pair_label), pair["target_genes"], "pair perturbed: gene shift"),
                  (pair_gene_synergy(shifts, pair_label), pair["target_genes"], "pair synergy per gene")]
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
