"""Fold metrics and cross-fold summaries agree with scikit-learn computed on the saved predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score
from sklearn.preprocessing import label_binarize

from workflow_scripts.core.errors import InputError
from workflow_scripts.core.metrics import score_predictions
from workflow_scripts.core.outputs import write_tsv
from workflow_scripts.evaluate.summary import summarize_experiment

CLASSES = ["a", "b", "c", "d"]
N_FOLDS = 3
MISSING_CLASS_FOLD = 2  # class "d" has no cell in this fold's true labels


def synthetic_predictions(
    rng: np.random.Generator, classes: list[str], true_classes: list[str], n_cells: int, skill: float
) -> pd.DataFrame:
    """Softmax probabilities that favour the true class by `skill`, in predictions.tsv layout."""
    true_labels = rng.choice(true_classes, n_cells)
    logits = rng.normal(size=(n_cells, len(classes)))
    logits[np.arange(n_cells), [classes.index(label) for label in true_labels]] += skill
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "cell_id": [f"cell_{index}" for index in range(n_cells)],
            "true_label": true_labels,
            "predicted_label": np.asarray(classes)[probabilities.argmax(axis=1)],
        }
    )
    return pd.concat([frame, pd.DataFrame(probabilities, columns=[f"prob:{c}" for c in classes])], axis=1)


SEED = 42


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """Two methods x three folds of predictions.tsv; 'd' is absent from the true labels of one fold."""
    directory = tmp_path_factory.mktemp("experiment")
    rng = np.random.default_rng(0)
    paths = {}
    for method, skill in (("zeta_model", 2.0), ("alpha_baseline", 0.8)):
        for fold in range(N_FOLDS):
            true_classes = CLASSES[:3] if fold == MISSING_CLASS_FOLD else CLASSES
            path = directory / method / f"fold_{fold}" / "predictions.tsv"
            write_tsv(synthetic_predictions(rng, CLASSES, true_classes, 80, skill), path)
            paths[(method, fold)] = path
    return paths


def sklearn_auc(frame: pd.DataFrame, classes: list[str]) -> float:
    """Macro one-vs-rest AUC over the classes present, from scikit-learn's multilabel path."""
    present = [index for index, label in enumerate(classes) if label in set(frame["true_label"])]
    indicators = label_binarize(frame["true_label"], classes=classes)
    probabilities = frame[[f"prob:{c}" for c in classes]].to_numpy()
    return roc_auc_score(indicators[:, present], probabilities[:, present], average="macro")


@pytest.mark.parametrize("fold", range(N_FOLDS))
def test_fold_metrics_match_scikit_learn(fold: int, experiment: dict, tmp_path: Path) -> None:
    predictions_path = experiment[("zeta_model", fold)]
    metrics = score_predictions(predictions_path)
    frame = pd.read_csv(predictions_path, sep="\t")
    true, predicted = frame["true_label"], frame["predicted_label"]
    assert metrics["classes"] == CLASSES
    assert metrics["accuracy"] == pytest.approx(accuracy_score(true, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro"))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(true, predicted, average="weighted"))
    assert metrics["macro_auc"] == pytest.approx(sklearn_auc(frame, CLASSES))
    assert metrics["confusion"] == confusion_matrix(true, predicted, labels=CLASSES).tolist()
    assert metrics["per_class"]["a"]["support"] == int((true == "a").sum())
    assert metrics["per_class"]["b"]["f1"] == pytest.approx(f1_score(true == "b", predicted == "b"))
    if fold == MISSING_CLASS_FOLD:
        assert metrics["per_class"]["d"]["support"] == 0
    else:
        probabilities = frame[[f"prob:{c}" for c in CLASSES]].to_numpy()
        expected_auc = roc_auc_score(true, probabilities, multi_class="ovr", labels=CLASSES)
        assert metrics["macro_auc"] == pytest.approx(expected_auc)


def test_binary_auc_is_the_plain_auc_of_the_second_class(tmp_path: Path) -> None:
    frame = synthetic_predictions(np.random.default_rng(4), ["healthy", "sick"], ["healthy", "sick"], 60, 1.0)
    write_tsv(frame, tmp_path / "predictions.tsv")
    metrics = score_predictions(tmp_path / "predictions.tsv")
    assert metrics["macro_auc"] == pytest.approx(roc_auc_score(frame["true_label"] == "sick", frame["prob:sick"]))


def test_auc_is_undefined_when_the_fold_has_one_class(tmp_path: Path) -> None:
    write_tsv(synthetic_predictions(np.random.default_rng(5), CLASSES, ["b"], 20, 1.0), tmp_path / "predictions.tsv")
    assert score_predictions(tmp_path / "predictions.tsv")["macro_auc"] is None


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("prob:a", 0.9, "sum to 1"), ("predicted_label", "zebra", "zebra")],
)
def test_malformed_predictions_are_refused(column: str, value: object, message: str, tmp_path: Path) -> None:
    frame = synthetic_predictions(np.random.default_rng(6), CLASSES, CLASSES, 20, 1.0)
    frame.loc[0, column] = value
    write_tsv(frame, tmp_path / "predictions.tsv")
    with pytest.raises(InputError, match=message):
        score_predictions(tmp_path / "predictions.tsv")


@pytest.fixture(scope="module")
def summary_directory(experiment: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    directory = tmp_path_factory.mktemp("summary")
    predictions = [(method, fold, SEED, path) for (method, fold), path in experiment.items()]
    summarize_experiment("toy", predictions, directory)
    return directory, predictions


def test_summary_mean_and_sample_sd(summary_directory: tuple[Path, list]) -> None:
    directory, metrics = summary_directory
    fold_table = pd.read_csv(directory / "fold_metrics.csv")
    summary = pd.read_csv(directory / "summary.csv")
    assert len(fold_table) == 2 * N_FOLDS
    assert summary["method"].tolist() == ["zeta_model", "alpha_baseline"]  # order given, not sorted
    for method, fold_rows in fold_table.groupby("method"):
        row = summary.set_index("method").loc[method]
        assert row["n_folds"] == N_FOLDS and row["experiment"] == "toy"
        for metric in ("accuracy", "macro_f1", "weighted_f1", "macro_auc"):
            values = fold_rows[metric].to_numpy()
            assert row[f"{metric}_mean"] == pytest.approx(values.mean())
            assert row[f"{metric}_sd"] == pytest.approx(values.std(ddof=1))
            assert row[f"{metric}_sd"] != pytest.approx(values.std(ddof=0))
            assert row[metric] == f"{row[f'{metric}_mean']:.3f} ± {row[f'{metric}_sd']:.3f}"
    accuracies = [score_predictions(path)["accuracy"] for name, _, _, path in metrics if name == "zeta_model"]
    assert fold_table[fold_table["method"] == "zeta_model"]["accuracy"].tolist() == pytest.approx(accuracies)


def test_summary_markdown_has_a_row_per_method(summary_directory: tuple[Path, list]) -> None:
    directory, _ = summary_directory
    summary = pd.read_csv(directory / "summary.csv")
    markdown = (directory / "summary.md").read_text()
    assert "| method | accuracy | macro F1 | macro AUC | n folds |" in markdown
    for row in summary.itertuples():
        assert f"| {row.method} | {row.accuracy} | {row.macro_f1} | {row.macro_auc} | {N_FOLDS} |" in markdown
    assert markdown.index("zeta_model") < markdown.index("alpha_baseline")


def test_per_class_summary_skips_folds_without_the_class(summary_directory: tuple[Path, list]) -> None:
    directory, metrics = summary_directory
    per_class = pd.read_csv(directory / "per_class.csv").set_index(["method", "class"])
    payloads = [score_predictions(path) for method, _, _, path in metrics if method == "alpha_baseline"]
    d_f1 = [payload["per_class"]["d"]["f1"] for payload in payloads if payload["per_class"]["d"]["support"] > 0]
    d_row = per_class.loc[("alpha_baseline", "d")]
    assert len(d_f1) == N_FOLDS - 1 and d_row["n_folds"] == N_FOLDS - 1
    assert d_row["f1_mean"] == pytest.approx(np.mean(d_f1))
    assert d_row["f1_sd"] == pytest.approx(np.std(d_f1, ddof=1))
    a_recall = [payload["per_class"]["a"]["recall"] for payload in payloads]
    assert per_class.loc[("alpha_baseline", "a"), "recall_mean"] == pytest.approx(np.mean(a_recall))
    assert per_class.loc[("alpha_baseline", "a"), "support"] == sum(p["per_class"]["a"]["support"] for p in payloads)
    assert len(per_class) == 2 * len(CLASSES)


def test_duplicate_fold_is_refused(summary_directory: tuple[Path, list], tmp_path: Path) -> None:
    _, metrics = summary_directory
    with pytest.raises(InputError, match="twice"):
        summarize_experiment("toy", [*metrics, metrics[0]], tmp_path)
    assert not any(tmp_path.iterdir())


def test_replicate_seeds_give_the_sd_over_folds_and_over_seeds(experiment: dict, tmp_path: Path) -> None:
    """Each fold trained with three seeds: the SD over folds is that of the folds' means over seeds, the
    SD over seeds that of the seeds' means over folds, and summary.md shows both."""
    rng = np.random.default_rng(8)
    predictions = []
    for seed in (42, 7, 9):
        for fold in range(N_FOLDS):
            path = tmp_path / "zeta_model" / f"fold_{fold}_seed_{seed}" / "predictions.tsv"
            write_tsv(synthetic_predictions(rng, CLASSES, CLASSES, 80, 1.5), path)
            predictions.append(("zeta_model", fold, seed, path))
    summarize_experiment("toy", predictions, tmp_path)
    runs = pd.read_csv(tmp_path / "fold_metrics.csv")
    row = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    assert len(runs) == 3 * N_FOLDS and row["n_folds"] == N_FOLDS and row["n_seeds"] == 3
    assert row["macro_f1_mean"] == pytest.approx(runs["macro_f1"].mean())
    assert row["macro_f1_sd"] == pytest.approx(runs.groupby("fold")["macro_f1"].mean().std(ddof=1))
    assert row["macro_f1_seed_sd"] == pytest.approx(runs.groupby("seed")["macro_f1"].mean().std(ddof=1))
    assert f"| {row['macro_f1_seed_sd']:.3f} | {row['macro_auc']} | {N_FOLDS} | 3 |" in (tmp_path / "summary.md").read_text()
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert (per_class["n_folds"] == N_FOLDS).all()


def test_one_seed_has_no_sd_over_seeds(summary_directory: tuple[Path, list]) -> None:
    directory, _ = summary_directory
    summary = pd.read_csv(directory / "summary.csv")
    assert (summary["n_seeds"] == 1).all() and summary["macro_f1_seed_sd"].isna().all()
    assert "over seeds" not in (directory / "summary.md").read_text()
