"""Per-fold metrics from predictions.tsv, and their mean ± SD over folds per method.

Every method (fine-tuned Geneformer or baseline) writes the same predictions.tsv, so one scorer
judges them all; metrics come from scikit-learn so they match what readers would compute. With
`replicate_seeds` each fold is trained once per seed: the SD over folds is then that of the folds'
means over seeds, and the SD over seeds that of the seeds' means over folds, which says how much a
method's number moves with floating-point and sampling noise alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.metrics import SUMMARY_METRICS, format_mean_sd, score_predictions
from ..core.outputs import atomic_path

RunPredictions = list[tuple[str, int, int, str | Path]]  # (method, fold, seed, predictions.tsv)


def load_fold_metrics(predictions: RunPredictions) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Score every run (fold and seed); run-level and per-class tables and the class order, checked for
    duplicates and one class order."""
    keys = [(method, int(fold), int(seed)) for method, fold, seed, _ in predictions]
    if not predictions or len(set(keys)) != len(keys):
        raise InputError("summarize predictions", "is empty or lists a (method, fold, seed) twice",
                         "pass each run's predictions once")
    fold_rows, class_rows, class_orders = [], [], {}
    for method, fold, seed, path in predictions:
        payload = score_predictions(path)
        class_orders[str(path)] = tuple(payload["classes"])
        key = {"method": method, "fold": int(fold), "seed": int(seed)}
        scores = {metric: np.nan if payload[metric] is None else payload[metric] for metric in SUMMARY_METRICS}
        fold_rows.append(key | {"n_predictions": payload["n_predictions"]} | scores)
        class_rows += [key | {"class": label} | class_scores for label, class_scores in payload["per_class"].items()]
    if len(set(class_orders.values())) != 1:
        raise InputError(
            "summarize predictions",
            f"prediction files disagree on classes: {class_orders}",
            "summarize the folds of one experiment",
        )
    return pd.DataFrame(fold_rows), pd.DataFrame(class_rows), list(next(iter(class_orders.values())))


def summary_table(experiment: str, folds: pd.DataFrame, method_order: list[str]) -> pd.DataFrame:
    """Per method and metric: the mean over runs, the sample SD (ddof=1) over folds (of each fold's mean
    over seeds) and over seeds (of each seed's mean over folds; NaN with one seed), plus a 'mean ± sd'
    column per metric (the SD over folds)."""
    per_fold = folds.groupby(["method", "fold"], sort=False)[list(SUMMARY_METRICS)].mean().groupby("method", sort=False)
    per_seed = folds.groupby(["method", "seed"], sort=False)[list(SUMMARY_METRICS)].mean().groupby("method", sort=False)
    summary = pd.DataFrame({"experiment": experiment, "method": method_order})
    summary["n_folds"] = per_fold.size().reindex(method_order).to_numpy()
    summary["n_seeds"] = per_seed.size().reindex(method_order).to_numpy()
    for metric in SUMMARY_METRICS:
        means = folds.groupby("method", sort=False)[metric].mean().reindex(method_order).to_numpy()
        sds = per_fold[metric].std(ddof=1).reindex(method_order).to_numpy()
        summary[f"{metric}_mean"] = means
        summary[f"{metric}_sd"] = sds
        summary[f"{metric}_seed_sd"] = per_seed[metric].std(ddof=1).reindex(method_order).to_numpy()
        summary[metric] = [format_mean_sd(mean, sd) for mean, sd in zip(means, sds)]
    return summary


def per_class_table(
    experiment: str, class_scores: pd.DataFrame, method_order: list[str], classes: list[str]
) -> pd.DataFrame:
    """Per-class precision/recall/F1 mean and SD (ddof=1) over the runs where the class occurs; total support.

    A fold without the class has no recall or F1 for it, so it is left out rather than counted as 0.
    """
    present = class_scores[class_scores["support"] > 0].groupby(["method", "class"])
    table = pd.DataFrame(index=pd.MultiIndex.from_product([method_order, classes], names=["method", "class"]))
    for score in ("precision", "recall", "f1"):
        table[f"{score}_mean"] = present[score].mean()
        table[f"{score}_sd"] = present[score].std(ddof=1)
    table["n_folds"] = present["fold"].nunique().reindex(table.index, fill_value=0)
    table["support"] = class_scores.groupby(["method", "class"])["support"].sum()
    table = table.reset_index()
    table.insert(0, "experiment", experiment)
    return table


def summary_markdown(experiment: str, summary: pd.DataFrame, per_class: pd.DataFrame, caveat: str | None = None) -> str:
    """Markdown: mean ± SD over folds per method (with replicate seeds, macro F1's SD over seeds too),
    then per-class F1 with one column per method (the layout of the ECE228 report's Table 2, baseline
    vs enhanced); a caveat, when given, first."""
    seeds = bool((summary["n_seeds"] > 1).any())
    lines = [
        f"## {experiment}: mean ± SD over folds",
        "",
        *([f"> **Warning:** {caveat}", ""] if caveat else []),
        "| method | accuracy | macro F1 |" + (" macro F1 SD over seeds |" if seeds else "")
        + " macro AUC | n folds |" + (" n seeds |" if seeds else ""),
        "|---|---|---|---|---|" + ("---|---|" if seeds else ""),
    ]
    lines += [
        f"| {row.method} | {row.accuracy} | {row.macro_f1} |" + (f" {row.macro_f1_seed_sd:.3f} |" if seeds else "")
        + f" {row.macro_auc} | {row.n_folds} |" + (f" {row.n_seeds} |" if seeds else "")
        for row in summary.itertuples(index=False)
    ]
    f1 = per_class.pivot(index="class", columns="method", values="f1_mean")[list(summary["method"])]
    support = per_class.groupby("class")["support"].first()
    lines += ["", "### Per-class F1 (mean over folds)", "",
              "| class | support | " + " | ".join(f1.columns) + " |", "|---|---|" + "---|" * len(f1.columns)]
    lines += [
        f"| {label} | {int(support[label])} | " + " | ".join(f"{value:.2f}" for value in row) + " |"
        for label, row in f1.iterrows()
    ]
    return "\n".join(lines) + "\n"


def summarize_experiment(experiment: str, predictions: RunPredictions, output_dir: str | Path,
                         caveat: str | None = None) -> None:
    """Score every (method, fold, seed) predictions.tsv; write fold_metrics.csv, summary.csv, summary.md,
    per_class.csv.
    `caveat`: what a reader must know before reading the table (e.g. the model is not Geneformer's)."""
    method_order = list(dict.fromkeys(method for method, *_ in predictions))
    ordered = sorted(predictions, key=lambda entry: (method_order.index(entry[0]), int(entry[2]), int(entry[1])))
    folds, class_scores, classes = load_fold_metrics(ordered)
    folds.insert(0, "experiment", experiment)
    summary = summary_table(experiment, folds, method_order)
    per_class = per_class_table(experiment, class_scores, method_order, classes)
    output_dir = Path(output_dir)
    for name, table in (("fold_metrics.csv", folds), ("summary.csv", summary), ("per_class.csv", per_class)):
        with atomic_path(output_dir / name) as temporary:
            table.to_csv(temporary, index=False)
    with atomic_path(output_dir / "summary.md") as temporary:
        temporary.write_text(summary_markdown(experiment, summary, per_class, caveat))
