"""Figures are written as real PNG and PDF files, and the mean ROC follows the folds' curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score

from workflow_scripts.core.errors import InputError
from workflow_scripts.core.metrics import read_predictions
from workflow_scripts.core.outputs import write_tsv
from workflow_scripts.evaluate.figures import (
    ROC_GRID,
    mean_roc,
    plot_experiment,
)

STEMS = ("roc", "confusion", "per_class_f1")


def write_predictions(path: Path, classes: list[str], true_classes: list[str], skill: float, seed: int) -> Path:
    """predictions.tsv with softmax probabilities favouring the true class by `skill`."""
    rng = np.random.default_rng(seed)
    true_labels = rng.choice(true_classes, 60)
    logits = rng.normal(size=(len(true_labels), len(classes)))
    logits[np.arange(len(true_labels)), [classes.index(label) for label in true_labels]] += skill
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "cell_id": [f"cell_{index}" for index in range(len(true_labels))],
            "true_label": true_labels,
            "predicted_label": np.asarray(classes)[probabilities.argmax(axis=1)],
        }
    )
    write_tsv(pd.concat([frame, pd.DataFrame(probabilities, columns=[f"prob:{c}" for c in classes])], axis=1), path)
    return path


def experiment_predictions(directory: Path, classes: list[str], n_folds: int = 3) -> list[tuple[str, int, int, Path]]:
    """Two methods x n_folds; the last class is absent from fold 2's true labels."""
    entries = []
    for method, skill in (("geneformer", 2.5), ("logreg_hvg", 1.0)):
        for fold in range(n_folds):
            true_classes = classes[:-1] if fold == 2 else classes
            path = directory / method / f"fold_{fold}" / "predictions.tsv"
            entries.append((method, fold, 42, write_predictions(path, classes, true_classes, skill, seed=len(entries))))
    return entries


@pytest.mark.parametrize(
    ("classes", "n_folds"),
    [(["alpha", "beta", "delta", "gamma"], 3), (["healthy", "sick"], 3), (["alpha", "beta", "gamma"], 1)],
)
def test_every_figure_is_a_real_png_and_pdf(classes: list[str], n_folds: int, tmp_path: Path) -> None:
    entries = experiment_predictions(tmp_path / "predictions", classes, n_folds)
    written = plot_experiment("toy", entries, tmp_path / "figures")
    expected = [tmp_path / "figures" / f"{stem}.{suffix}" for stem in STEMS for suffix in ("png", "pdf")]
    assert written == expected
    for path in written:
        content = path.read_bytes()
        assert content.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF")
    for stem in STEMS:
        height, width = imread(tmp_path / "figures" / f"{stem}.png").shape[:2]
        assert height > 300 and width > 300
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == sorted(path.name for path in expected)


def test_mean_roc_averages_the_folds_that_contain_the_class(tmp_path: Path) -> None:
    classes = ["alpha", "beta", "gamma"]
    folds = [
        read_predictions(path)
        for _, _, _, path in experiment_predictions(tmp_path, classes)
        if path.parent.parent.name == "geneformer"
    ]
    mean_curve, sd_curve, aucs = mean_roc(folds, classes.index("gamma"))
    expected = [
        roc_auc_score(fold.true_labels == "gamma", fold.probabilities[:, 2])
        for fold in folds
        if "gamma" in fold.true_labels
    ]
    assert aucs == pytest.approx(expected) and len(aucs) == 2
    assert mean_curve.shape == ROC_GRID.shape and mean_curve[0] == 0 and mean_curve[-1] == pytest.approx(1)
    assert (np.diff(mean_curve) >= 0).all() and (sd_curve >= 0).all()
    assert np.trapezoid(mean_curve, ROC_GRID) == pytest.approx(np.mean(expected), abs=0.03)


def test_mixed_class_orders_are_refused(tmp_path: Path) -> None:
    entries = [
        ("geneformer", 0, 42, write_predictions(tmp_path / "a.tsv", ["x", "y", "z"], ["x", "y", "z"], 1.0, 0)),
        ("geneformer", 1, 42, write_predictions(tmp_path / "b.tsv", ["x", "y"], ["x", "y"], 1.0, 1)),
    ]
    with pytest.raises(InputError, match="disagree on classes"):
        plot_experiment("toy", entries, tmp_path / "figures")
    assert not (tmp_path / "figures").exists()


def test_relative_change_figure(tmp_path):
    from workflow_scripts.evaluate.figures import plot_relative_change

    summary = pd.DataFrame({"method": ["default", "linear_probing", "full"], "accuracy_mean": [0.8, 0.88, 0.72],
                            "macro_f1_mean": [0.7, 0.7, 0.63], "macro_auc_mean": [0.9, 0.95, 0.9]})
    summary.to_csv(tmp_path / "summary.csv", index=False)
    paths = plot_relative_change("x", tmp_path / "summary.csv", "default", tmp_path)
    assert [p.name for p in paths] == ["relative_change.png", "relative_change.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    with pytest.raises(InputError, match="reference method 'nope'"):
        plot_relative_change("x", tmp_path / "summary.csv", "nope", tmp_path)
