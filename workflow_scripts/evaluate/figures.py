"""Figures comparing methods over folds: mean ROC with SD band, confusion matrices, per-class F1.

Built on matplotlib Figure objects, never pyplot: no display and no global figure state, and
savefig renders PNG with the Agg canvas and PDF with the PDF canvas. Each figure is saved as PNG
(dpi 150) and PDF. A method keeps one colour in every figure.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from ..core.errors import InputError
from ..core.metrics import (
    Predictions,
    classes_with_roc,
    fold_metrics,
    format_mean_sd,
    read_predictions,
    roc_class_indices,
)
from ..core.style import method_colours, save_figure
from .summary import RunPredictions

ROC_GRID = np.linspace(0, 1, 100)  # Geneformer's mean ROC: each fold interpolated on 100 FPR points
ROC_PANELS_PER_ROW = 4


def load_method_folds(predictions: RunPredictions) -> tuple[dict[str, list[Predictions]], list[str]]:
    """Predictions grouped by method (order given, folds ascending), checked for one class order; the
    rules pass the folds of one seed (a fold twice would count twice in the mean curves)."""
    keys = [(method, int(fold)) for method, fold, *_ in predictions]
    if not predictions or len(set(keys)) != len(keys):
        raise InputError(
            "figure predictions", "is empty or lists a (method, fold) twice", "pass each fold's predictions once"
        )
    by_method: dict[str, list[Predictions]] = {}
    for method, _, _, path in sorted(predictions, key=lambda entry: int(entry[1])):
        by_method.setdefault(method, []).append(read_predictions(path))
    class_orders = {tuple(fold.classes) for folds in by_method.values() for fold in folds}
    if len(class_orders) != 1:
        raise InputError(
            "figure predictions", f"files disagree on classes: {class_orders}", "plot one experiment's folds"
        )
    method_order = list(dict.fromkeys(method for method, *_ in predictions))
    return {method: by_method[method] for method in method_order}, list(class_orders.pop())


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


def plot_experiment(experiment: str, predictions: RunPredictions, output_dir: str | Path) -> list[Path]:
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


