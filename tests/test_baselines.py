"""Baselines learn from training folds only, beat chance, and write valid, reproducible predictions."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workflow_scripts.baselines.classifiers import run_baseline
from workflow_scripts.baselines.settings import BaselineSettings
from workflow_scripts.core.errors import InputError

CLASSES = ["alpha", "beta", "delta"]
N_CELLS_PER_CLASS = 40
N_GENES = 150
MARKERS_PER_CLASS = 8
SETTINGS = {
    "pca_rf": {"n_components": 10, "n_estimators": 40},
    "logreg_hvg": {"n_top_genes": 40, "C": 1.0, "max_iter": 500},
}
KINDS = list(SETTINGS)
CELLS = "cell_classification"


def baseline(kind: str, options: dict) -> BaselineSettings:
    return BaselineSettings.from_config({"kind": kind, "options": options})


def simulate_counts(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Poisson counts where each class over-expresses its own marker genes (the first genes)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(CLASSES, N_CELLS_PER_CLASS)
    means = np.tile(rng.gamma(2.0, 1.0, N_GENES), (len(labels), 1))
    for position, label in enumerate(CLASSES):
        markers = slice(position * MARKERS_PER_CLASS, (position + 1) * MARKERS_PER_CLASS)
        means[labels == label, markers] *= 6
    return sp.csr_matrix(rng.poisson(means).astype(np.int32)), labels


def write_dataset(directory: Path, counts: sp.csr_matrix, labels: np.ndarray, folds: np.ndarray) -> tuple[Path, Path]:
    """h5ad (CSR int32, n_counts, cell ids) and folds.tsv, as the workflow's earlier stages write them."""
    cell_ids = [f"cell_{index:04d}" for index in range(counts.shape[0])]
    obs = pd.DataFrame({"n_counts": np.asarray(counts.sum(axis=1)).ravel(), "cell_type": labels}, index=cell_ids)
    h5ad_path, folds_path = directory / "data.h5ad", directory / "folds.tsv"
    ad.AnnData(counts, obs=obs).write_h5ad(h5ad_path)
    pd.DataFrame({"cell_id": cell_ids, "label": labels, "fold": folds}).to_csv(folds_path, sep="\t", index=False)
    return h5ad_path, folds_path


def stratified_folds(labels: np.ndarray, n_folds: int = 3) -> np.ndarray:
    """Fold = position of the cell within its class, modulo n_folds (every class in every fold)."""
    return pd.Series(labels).groupby(labels).cumcount().to_numpy() % n_folds


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    counts, labels = simulate_counts()
    return write_dataset(tmp_path_factory.mktemp("data"), counts, labels, stratified_folds(labels))


def run(kind: str, h5ad_path: Path, folds_path: Path, output: Path, fold: int = 0, seed: int = 3) -> pd.DataFrame:
    run_baseline(CELLS, h5ad_path, folds_path, fold, baseline(kind, SETTINGS[kind]), seed, output)
    return pd.read_csv(output, sep="\t")


@pytest.mark.parametrize("kind", KINDS)
def test_baseline_beats_chance_with_valid_probabilities(kind: str, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    h5ad_path, folds_path = dataset
    folds = pd.read_csv(folds_path, sep="\t")
    predictions = run(kind, h5ad_path, folds_path, tmp_path / "predictions.tsv", fold=1)
    held_out = folds[folds["fold"] == 1]
    assert list(predictions.columns) == ["cell_id", "true_label", "predicted_label"] + [f"prob:{c}" for c in CLASSES]
    assert predictions["cell_id"].tolist() == held_out["cell_id"].tolist()
    assert predictions["true_label"].tolist() == held_out["label"].tolist()
    probabilities = predictions[[f"prob:{c}" for c in CLASSES]].to_numpy()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    assert (np.asarray(CLASSES)[probabilities.argmax(axis=1)] == predictions["predicted_label"]).all()
    accuracy = (predictions["predicted_label"] == predictions["true_label"]).mean()
    assert accuracy > 0.8  # chance is 1/3


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_writes_the_same_file(kind: str, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    h5ad_path, folds_path = dataset
    run(kind, h5ad_path, folds_path, tmp_path / "first.tsv")
    run(kind, h5ad_path, folds_path, tmp_path / "second.tsv")
    assert (tmp_path / "first.tsv").read_bytes() == (tmp_path / "second.tsv").read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_held_out_labels_are_never_used(kind: str, tmp_path: Path) -> None:
    """Scrambling the held-out fold's labels changes true_label only, never a prediction."""
    counts, labels = simulate_counts()
    folds = stratified_folds(labels)
    original = write_dataset(tmp_path, counts, labels, folds)
    scrambled_labels = labels.copy()
    held_out = folds == 0
    scrambled_labels[held_out] = np.roll(labels[held_out], 7)
    scrambled_directory = tmp_path / "scrambled"
    scrambled_directory.mkdir()
    scrambled = write_dataset(scrambled_directory, counts, scrambled_labels, folds)
    reference = run(kind, *original, tmp_path / "original.tsv")
    changed = run(kind, *scrambled, tmp_path / "scrambled.tsv")
    assert (reference["true_label"] != changed["true_label"]).any()
    pd.testing.assert_frame_equal(reference.drop(columns="true_label"), changed.drop(columns="true_label"))


@pytest.mark.parametrize("kind", KINDS)
def test_held_out_expression_does_not_shape_the_model(kind: str, tmp_path: Path) -> None:
    """Make quiet genes wildly variable in half of the held-out cells only.

    Gene selection, scaling or PCA fitted on all cells would pick those genes up (they become the
    most variable genes of the whole matrix) and change the predictions of the untouched held-out
    cells; fitted on training cells alone, those predictions stay identical.
    """
    counts, labels = simulate_counts()
    folds = stratified_folds(labels)
    original = write_dataset(tmp_path, counts, labels, folds)
    rng = np.random.default_rng(1)
    perturbed_cells = np.flatnonzero(folds == 0)[::2]
    quiet_genes = np.arange(N_GENES - 60, N_GENES)
    perturbed_counts = counts.toarray()
    perturbed_counts[np.ix_(perturbed_cells, quiet_genes)] = rng.poisson(200, (len(perturbed_cells), len(quiet_genes)))
    perturbed_directory = tmp_path / "perturbed"
    perturbed_directory.mkdir()
    perturbed = write_dataset(perturbed_directory, sp.csr_matrix(perturbed_counts), labels, folds)
    reference = run(kind, *original, tmp_path / "original.tsv")
    changed = run(kind, *perturbed, tmp_path / "perturbed.tsv")
    untouched = ~reference["cell_id"].isin([f"cell_{index:04d}" for index in perturbed_cells])
    assert untouched.sum() > 0 and (~untouched).sum() > 0
    pd.testing.assert_frame_equal(reference[untouched], changed[untouched])


@pytest.mark.parametrize("kind", KINDS)
def test_class_missing_from_training_gets_zero_probability(kind: str, tmp_path: Path) -> None:
    counts, labels = simulate_counts()
    folds = stratified_folds(labels)
    folds[labels == "delta"] = 0  # every delta cell is held out in fold 0
    h5ad_path, folds_path = write_dataset(tmp_path, counts, labels, folds)
    capped = "n_components" if kind == "pca_rf" else "n_top_genes"
    settings = {**SETTINGS[kind], capped: 10_000}  # capped at what the data allows
    run_baseline(CELLS, h5ad_path, folds_path, 0, baseline(kind, settings), 0, tmp_path / "predictions.tsv")
    predictions = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    assert (predictions["prob:delta"] == 0).all()
    assert "delta" not in set(predictions["predicted_label"])
    np.testing.assert_allclose(predictions[[f"prob:{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-9)


def test_bad_inputs_are_refused_before_any_output(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    h5ad_path, folds_path = dataset
    output = tmp_path / "predictions.tsv"
    folds = pd.read_csv(folds_path, sep="\t")
    unknown_cell = pd.concat([folds, pd.DataFrame({"cell_id": ["stranger"], "label": ["alpha"], "fold": [0]})])
    unknown_path = tmp_path / "unknown.tsv"
    unknown_cell.to_csv(unknown_path, sep="\t", index=False)
    with pytest.raises(InputError, match="stranger"):
        run_baseline(CELLS, h5ad_path, unknown_path, 0, baseline("pca_rf", SETTINGS["pca_rf"]), 0, output)
    one_label = folds.assign(label="alpha")
    one_label_path = tmp_path / "one_label.tsv"
    one_label.to_csv(one_label_path, sep="\t", index=False)
    with pytest.raises(InputError, match="fewer than two labels"):
        run_baseline(CELLS, h5ad_path, one_label_path, 0, baseline("logreg_hvg", SETTINGS["logreg_hvg"]), 0, output)
    with pytest.raises(InputError, match="no fold 9"):
        run_baseline(CELLS, h5ad_path, folds_path, 9, baseline("pca_rf", SETTINGS["pca_rf"]), 0, output)
    with pytest.raises(InputError, match="'gene_stats_logreg' is not a baseline of cell_classification"):
        run_baseline(CELLS, h5ad_path, folds_path, 0, baseline("gene_stats_logreg", {"C": 1.0, "max_iter": 10}), 0,
                     output)
    assert not output.exists()


def test_baseline_settings_are_typed_by_kind_and_refuse_bad_keys_by_name() -> None:
    assert baseline("logreg_hvg", SETTINGS["logreg_hvg"]).options.n_top_genes == 40
    with pytest.raises(InputError, match="'svm' is not a baseline"):
        baseline("svm", {})
    with pytest.raises(InputError, match=r"options\.n_top_genes.*is missing from HvgLogisticSettings"):
        baseline("logreg_hvg", {"C": 1.0, "max_iter": 10})
    with pytest.raises(InputError, match=r"--settings\.options\.n_estimator.*is not a setting of PcaForestSettings"):
        BaselineSettings.from_json('{"kind": "pca_rf", "options": {"n_components": 5, "n_estimator": 5}}', "--settings")
    with pytest.raises(InputError, match=r"settings\.method.*is not a setting of BaselineSettings"):
        BaselineSettings.from_config({"kind": "pca_rf", "options": SETTINGS["pca_rf"], "method": "x"})
