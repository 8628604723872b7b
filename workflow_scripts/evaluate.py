"""Per-fold metrics from predictions.tsv, and their mean ± SD over folds per method.

Every method (fine-tuned Geneformer or baseline) writes the same predictions.tsv, so one scorer
judges them all; metrics come from scikit-learn so they match what readers would compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from .errors import InputError
from .io_utils import PROBABILITY_PREFIX, atomic_path

SUMMARY_METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_auc")
PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Predictions:
    """One fold's predictions: labels, and probabilities whose columns follow `classes`."""

    cell_ids: np.ndarray
    true_labels: np.ndarray
    predicted_labels: np.ndarray
    probabilities: np.ndarray
    classes: list[str]


def read_predictions(path: str | Path) -> Predictions:
    """Read and check predictions.tsv (labels known, probabilities finite and summing to 1)."""
    frame = pd.read_csv(
        path, sep="\t", dtype={"cell_id": str, "true_label": str, "predicted_label": str}, keep_default_na=False
    )
    probability_columns = [column for column in frame.columns if column.startswith(PROBABILITY_PREFIX)]
    missing = [column for column in ("cell_id", "true_label", "predicted_label") if column not in frame.columns]
    if missing or not probability_columns:
        raise InputError(
            str(path),
            f"lacks columns {missing or ['prob:<class>']}",
            "write cell_id, true_label, predicted_label and one prob:<class> column per class",
        )
    if frame.empty:
        raise InputError(str(path), "has no cells", "check that the held-out fold is not empty")
    classes = [column[len(PROBABILITY_PREFIX) :] for column in probability_columns]
    unknown = sorted((set(frame["true_label"]) | set(frame["predicted_label"])) - set(classes))
    if unknown:
        raise InputError(
            str(path), f"has labels without a probability column: {unknown}", "write one prob:<class> per class"
        )
    probabilities = frame[probability_columns].to_numpy(dtype=np.float64)
    if not np.isfinite(probabilities).all() or np.abs(probabilities.sum(axis=1) - 1).max() > PROBABILITY_SUM_TOLERANCE:
        raise InputError(str(path), "has probabilities that are not finite or do not sum to 1", "write softmax outputs")
    return Predictions(
        cell_ids=frame["cell_id"].to_numpy(),
        true_labels=frame["true_label"].to_numpy(),
        predicted_labels=frame["predicted_label"].to_numpy(),
        probabilities=probabilities,
        classes=classes,
    )


def roc_class_indices(n_classes: int) -> list[int]:
    """Classes that get a one-vs-rest ROC: all of them, or only the second of a binary task (its plain ROC)."""
    return [1] if n_classes == 2 else list(range(n_classes))


def classes_with_roc(predictions: Predictions) -> list[int]:
    """Class indices whose ROC is defined in this fold (the class is present, and not in every cell)."""
    n_cells = len(predictions.true_labels)
    return [
        index
        for index in roc_class_indices(len(predictions.classes))
        if 0 < np.sum(predictions.true_labels == predictions.classes[index]) < n_cells
    ]


def macro_auc(predictions: Predictions) -> float | None:
    """Mean one-vs-rest ROC AUC over classes present in the fold; None where no ROC is defined."""
    aucs = [
        roc_auc_score(predictions.true_labels == predictions.classes[index], predictions.probabilities[:, index])
        for index in classes_with_roc(predictions)
    ]
    return float(np.mean(aucs)) if aucs else None


def fold_metrics(predictions: Predictions) -> dict:
    """accuracy, macro/weighted F1, macro AUC, per-class scores and the confusion matrix (rows = true)."""
    true, predicted, classes = predictions.true_labels, predictions.predicted_labels, predictions.classes
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, labels=classes, zero_division=0)
    return {
        "n_predictions": len(true),  # cells, or gene tokens in a gene task
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(true, predicted, average="weighted", zero_division=0)),
        "macro_auc": macro_auc(predictions),
        "classes": classes,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(true, predicted, labels=classes).tolist(),
    }


def score_predictions(predictions_tsv: str | Path) -> dict:
    """Read and score one fold's predictions.tsv.

    Macro F1 averages over the labels that occur in the fold as true or predicted labels
    (scikit-learn's default): a class the fold neither holds nor predicts has no F1 to average.
    """
    return fold_metrics(read_predictions(predictions_tsv))


def format_mean_sd(mean: float, sd: float) -> str:
    """'0.950 ± 0.012'; 'n/a' for an undefined part (e.g. the SD of a single fold)."""
    return " ± ".join("n/a" if np.isnan(value) else f"{value:.3f}" for value in (mean, sd))


def load_fold_metrics(predictions: list[tuple[str, int, str | Path]]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Score every fold; fold-level and per-class tables and the class order, checked for duplicates
    and one class order."""
    keys = [(method, int(fold)) for method, fold, _ in predictions]
    if not predictions or len(set(keys)) != len(keys):
        raise InputError(
            "summarize predictions", "is empty or lists a (method, fold) twice", "pass each fold's predictions once"
        )
    fold_rows, class_rows, class_orders = [], [], {}
    for method, fold, path in predictions:
        payload = score_predictions(path)
        class_orders[str(path)] = tuple(payload["classes"])
        key = {"method": method, "fold": int(fold)}
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
    """Mean and sample SD (ddof=1) per method and metric, plus a 'mean ± sd' column per metric."""
    grouped = folds.groupby("method", sort=False)
    summary = pd.DataFrame({"experiment": experiment, "method": method_order})
    summary["n_folds"] = grouped.size().reindex(method_order).to_numpy()
    for metric in SUMMARY_METRICS:
        means = grouped[metric].mean().reindex(method_order).to_numpy()
        sds = grouped[metric].std(ddof=1).reindex(method_order).to_numpy()
        summary[f"{metric}_mean"] = means
        summary[f"{metric}_sd"] = sds
        summary[metric] = [format_mean_sd(mean, sd) for mean, sd in zip(means, sds)]
    return summary


def per_class_table(
    experiment: str, class_scores: pd.DataFrame, method_order: list[str], classes: list[str]
) -> pd.DataFrame:
    """Per-class precision/recall/F1 mean and SD (ddof=1) over the folds where the class occurs; total support.

    A fold without the class has no recall or F1 for it, so it is left out rather than counted as 0.
    """
    present = class_scores[class_scores["support"] > 0].groupby(["method", "class"])
    table = pd.DataFrame(index=pd.MultiIndex.from_product([method_order, classes], names=["method", "class"]))
    for score in ("precision", "recall", "f1"):
        table[f"{score}_mean"] = present[score].mean()
        table[f"{score}_sd"] = present[score].std(ddof=1)
    table["n_folds"] = present.size().reindex(table.index, fill_value=0)
    table["support"] = class_scores.groupby(["method", "class"])["support"].sum()
    table = table.reset_index()
    table.insert(0, "experiment", experiment)
    return table


def summary_markdown(experiment: str, summary: pd.DataFrame, per_class: pd.DataFrame) -> str:
    """Markdown: mean ± SD over folds per method, then per-class F1 with one column per method
    (the layout of the ECE228 report's Table 2, baseline vs enhanced)."""
    lines = [
        f"## {experiment}: mean ± SD over folds",
        "",
        "| method | accuracy | macro F1 | macro AUC | n folds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.method} | {row.accuracy} | {row.macro_f1} | {row.macro_auc} | {row.n_folds} |"
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


def summarize_experiment(experiment: str, predictions: list[tuple[str, int, str | Path]], output_dir: str | Path) -> None:
    """Score every (method, fold) predictions.tsv; write fold_metrics.csv, summary.csv, summary.md, per_class.csv."""
    method_order = list(dict.fromkeys(method for method, _, _ in predictions))
    ordered = sorted(predictions, key=lambda entry: (method_order.index(entry[0]), int(entry[1])))
    folds, class_scores, classes = load_fold_metrics(ordered)
    folds.insert(0, "experiment", experiment)
    summary = summary_table(experiment, folds, method_order)
    per_class = per_class_table(experiment, class_scores, method_order, classes)
    output_dir = Path(output_dir)
    for name, table in (("fold_metrics.csv", folds), ("summary.csv", summary), ("per_class.csv", per_class)):
        with atomic_path(output_dir / name) as temporary:
            table.to_csv(temporary, index=False)
    with atomic_path(output_dir / "summary.md") as temporary:
        temporary.write_text(summary_markdown(experiment, summary, per_class))
