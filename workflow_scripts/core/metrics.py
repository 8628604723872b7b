"""Predictions tables and the metrics of one fold (accuracy, F1, one-vs-rest AUC), shared by evaluation
and the quantization benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from .errors import InputError
from .outputs import PROBABILITY_PREFIX

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
