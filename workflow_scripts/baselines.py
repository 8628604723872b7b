"""Classical baselines a fine-tuned Geneformer must beat, trained and scored on the same folds.

Two baselines others report for these tasks: PCA + random forest (BioNeMo's "scRNA workflow"
baseline) and logistic regression on highly variable genes (which matches or beats scGPT on the
pancreas benchmark). Every fitted step (PCA, gene selection, scaling, classifier) sees the training
cells only, so the held-out fold's expression and labels cannot leak into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .counts import TARGET_SUM
from .errors import InputError
from .folds import class_order, read_folds
from .io_utils import write_tsv



@dataclass(frozen=True)
class FoldSplit:
    """Log-normalized expression and labels of one fold's training and held-out cells."""

    train_expression: sp.csr_matrix
    train_labels: np.ndarray
    test_expression: sp.csr_matrix
    test_labels: np.ndarray
    test_cell_ids: np.ndarray
    classes: list[str]


def log_normalize(counts: sp.spmatrix, n_counts: np.ndarray) -> sp.csr_matrix:
    """log1p(count / n_counts * 1e4), staying sparse (zeros stay zeros)."""
    scaled = sp.csr_matrix(sp.diags(TARGET_SUM / n_counts) @ counts.astype(np.float64))
    scaled.data = np.log1p(scaled.data)
    return scaled


def load_fold_split(h5ad_path: str | Path, folds_tsv: str | Path, fold: int) -> FoldSplit:
    """Match folds.tsv to the h5ad by cell id and split off the held-out fold."""
    folds = read_folds(folds_tsv)
    if fold not in set(folds["fold"]):
        raise InputError(str(folds_tsv), f"has no fold {fold}", f"use one of {sorted(set(folds['fold']))}")
    if folds.loc[folds["fold"] != fold, "label"].nunique() < 2:
        raise InputError(
            str(folds_tsv), f"the cells outside fold {fold} hold fewer than two labels", "rebuild the folds"
        )
    adata = ad.read_h5ad(h5ad_path)
    if "n_counts" not in adata.obs.columns:
        raise InputError(
            str(h5ad_path), "lacks obs['n_counts']", "prepare the dataset so obs['n_counts'] holds row sums"
        )
    rows = adata.obs_names.get_indexer(folds["cell_id"])
    if (rows < 0).any():
        absent = folds["cell_id"][rows < 0]
        raise InputError(
            str(folds_tsv),
            f"{len(absent)} cell ids are not in {h5ad_path}, e.g. {list(absent[:3])}",
            "rebuild folds.tsv from this dataset",
        )
    n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)[rows]
    if not (n_counts > 0).all():
        raise InputError(str(h5ad_path), "has cells with n_counts <= 0", "filter out empty cells before splitting")
    expression = log_normalize(sp.csr_matrix(adata.X)[rows], n_counts)
    held_out = (folds["fold"] == fold).to_numpy()
    labels = folds["label"].to_numpy()
    return FoldSplit(
        train_expression=expression[~held_out],
        train_labels=labels[~held_out],
        test_expression=expression[held_out],
        test_labels=labels[held_out],
        test_cell_ids=folds["cell_id"].to_numpy()[held_out],
        classes=class_order(folds),
    )


def pca_random_forest(split: FoldSplit, settings: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA then a random forest; returns (classes, probabilities).

    ARPACK centres the sparse matrix implicitly (no densifying) and needs fewer components than
    min(cells, genes), hence the cap.
    """
    n_components = min(settings["n_components"], min(split.train_expression.shape) - 1)
    if n_components < 1:
        raise InputError("pca_rf", "too few training cells or genes for PCA", "use more cells or genes")
    pca = PCA(n_components=n_components, svd_solver="arpack", random_state=seed)
    train_embedding = pca.fit_transform(split.train_expression)
    forest = RandomForestClassifier(n_estimators=settings["n_estimators"], random_state=seed, n_jobs=1)
    forest.fit(train_embedding, split.train_labels)
    return forest.classes_, forest.predict_proba(pca.transform(split.test_expression))


def highly_variable_genes(train_expression: sp.csr_matrix, n_top_genes: int) -> np.ndarray:
    """Boolean mask of Seurat-flavour HVGs chosen from the training cells alone.

    Genes never detected in training have no dispersion, so at most the detected genes are chosen.
    """
    detected = np.asarray((train_expression != 0).sum(axis=0)).ravel() > 0
    n_selected = min(n_top_genes, int(detected.sum()))
    if n_selected < 1:
        raise InputError("logreg_hvg", "no gene is detected in the training cells", "check the dataset's counts")
    training = ad.AnnData(train_expression[:, detected])
    sc.pp.highly_variable_genes(training, n_top_genes=n_selected, flavor="seurat")
    mask = np.zeros(train_expression.shape[1], dtype=bool)
    mask[np.flatnonzero(detected)] = training.var["highly_variable"].to_numpy()
    return mask


def logistic_regression_hvg(split: FoldSplit, settings: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """HVGs and standardization fitted on training cells, then logistic regression; returns (classes, probabilities)."""
    genes = highly_variable_genes(split.train_expression, settings["n_top_genes"])
    scaler = StandardScaler()
    train_features = scaler.fit_transform(split.train_expression[:, genes].toarray())
    test_features = scaler.transform(split.test_expression[:, genes].toarray())
    model = LogisticRegression(C=settings["C"], max_iter=settings["max_iter"], random_state=seed)
    model.fit(train_features, split.train_labels)
    return model.classes_, model.predict_proba(test_features)


def predictions_frame(
    cell_ids: np.ndarray,
    true_labels: np.ndarray,
    classes: list[str],
    model_classes: np.ndarray,
    model_probabilities: np.ndarray,
) -> pd.DataFrame:
    """The predictions.tsv table: probabilities spread onto the experiment's class order (absent classes get 0)."""
    probabilities = np.zeros((len(cell_ids), len(classes)))
    probabilities[:, [classes.index(label) for label in model_classes]] = model_probabilities
    frame = pd.DataFrame(
        {
            "cell_id": cell_ids,
            "true_label": true_labels,
            "predicted_label": np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)],
        }
    )
    probability_columns = pd.DataFrame(probabilities, columns=[f"prob:{label}" for label in classes])
    return pd.concat([frame, probability_columns], axis=1)


BASELINES = {"pca_rf": pca_random_forest, "logreg_hvg": logistic_regression_hvg}
REQUIRED_SETTINGS = {"pca_rf": ("n_components", "n_estimators"), "logreg_hvg": ("n_top_genes", "C", "max_iter")}


def run_baseline(
    kind: str,
    h5ad_path: str | Path,
    folds_tsv: str | Path,
    fold: int,
    settings: dict,
    seed: int,
    output_predictions: str | Path,
) -> None:
    """Train a baseline on every fold but `fold`, predict the held-out fold, write predictions.tsv."""
    if kind not in BASELINES:
        raise InputError("baseline kind", f"unknown kind '{kind}'", f"use one of {list(BASELINES)}")
    missing_settings = [key for key in REQUIRED_SETTINGS[kind] if key not in settings]
    if missing_settings:
        raise InputError(f"{kind} settings", f"lack {missing_settings}", "pass the validated baselines.<kind> config")
    split = load_fold_split(h5ad_path, folds_tsv, fold)
    model_classes, model_probabilities = BASELINES[kind](split, settings, seed)
    frame = predictions_frame(split.test_cell_ids, split.test_labels, split.classes, model_classes, model_probabilities)
    write_tsv(frame, output_predictions)
