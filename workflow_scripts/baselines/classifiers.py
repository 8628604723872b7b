"""Classical baselines a fine-tuned Geneformer must beat, trained and scored on the same folds.

Cell tasks: PCA + random forest (BioNeMo's "scRNA workflow" baseline) and logistic regression on
highly variable genes (which matches or beats scGPT on the pancreas benchmark). Gene tasks: each
gene described by its expression across the training cells, either its profile reduced by PCA +
random forest, or summary statistics (level, dispersion, detection) + logistic regression. Every
fitted step sees the training cells or genes only, so held-out labels cannot leak into the model.
Gene predictions are written per held-out token in the test cells, the unit the fine-tuned token
classifier is scored on. The experiment's task (core/tasks.py) gives a fold's features and the rows
of its predictions table; a kind here only fits and predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..core.errors import InputError
from ..core.outputs import write_tsv
from ..core.tasks import BaselineFold, task_named
from .settings import (
    BaselineSettings,
    HvgLogisticSettings,
    LogisticSettings,
    PcaForestSettings,
)


def pca_random_forest(split: BaselineFold, settings: PcaForestSettings, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA then a random forest; returns (classes, probabilities).

    ARPACK centres the sparse matrix implicitly (no densifying) and needs fewer components than
    min(cells, genes), hence the cap.
    """
    n_components = min(settings.n_components, min(split.train_features.shape) - 1)
    if n_components < 1:
        raise InputError("pca_rf", "too few training cells or genes for PCA", "use more cells or genes")
    pca = PCA(n_components=n_components, svd_solver="arpack", random_state=seed)
    train_embedding = pca.fit_transform(split.train_features)
    forest = RandomForestClassifier(n_estimators=settings.n_estimators, random_state=seed, n_jobs=1)
    forest.fit(train_embedding, split.train_labels)
    return forest.classes_, forest.predict_proba(pca.transform(split.test_features))


def highly_variable_genes(train_expression: sp.csr_matrix, n_top_genes: int) -> np.ndarray:
    """Boolean mask of Seurat-flavour HVGs chosen from the training cells alone.

    Genes never detected in training have no dispersion, so at most the detected genes are chosen.
    """
    detected = np.asarray((train_expression != 0).sum(axis=0)).ravel() > 0
    n_selected = min(n_top_genes, int(detected.sum()))
    if n_selected < 1:
        raise InputError("logreg_hvg", "no gene is detected in the training cells", "check the dataset's counts")
    import scanpy as sc  # 2 s to import: only the jobs that select HVGs pay for it

    training = ad.AnnData(train_expression[:, detected])
    sc.pp.highly_variable_genes(training, n_top_genes=n_selected, flavor="seurat")
    mask = np.zeros(train_expression.shape[1], dtype=bool)
    mask[np.flatnonzero(detected)] = training.var["highly_variable"].to_numpy()
    return mask


def logistic_regression_hvg(split: BaselineFold, settings: HvgLogisticSettings, seed: int
                            ) -> tuple[np.ndarray, np.ndarray]:
    """HVGs and standardization fitted on training cells, then logistic regression; returns (classes, probabilities)."""
    genes = highly_variable_genes(split.train_features, settings.n_top_genes)
    scaler = StandardScaler()
    train_features = scaler.fit_transform(split.train_features[:, genes].toarray())
    test_features = scaler.transform(split.test_features[:, genes].toarray())
    model = LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=seed)
    model.fit(train_features, split.train_labels)
    return model.classes_, model.predict_proba(test_features)


def spread_probabilities(classes: list[str], model_classes: np.ndarray, model_probabilities: np.ndarray) -> np.ndarray:
    """Probabilities on the experiment's class order (classes the model never saw in training get 0)."""
    probabilities = np.zeros((len(model_probabilities), len(classes)))
    probabilities[:, [classes.index(label) for label in model_classes]] = model_probabilities
    return probabilities


def gene_expression_statistics(profiles: np.ndarray) -> np.ndarray:
    """Per gene: log mean, log squared coefficient of variation, detected fraction, log mean where detected."""
    detected = profiles > 0
    mean = profiles.mean(axis=1)
    squared_cv = profiles.var(axis=1) / np.maximum(mean, 1e-12) ** 2
    mean_where_detected = profiles.sum(axis=1) / np.maximum(detected.sum(axis=1), 1)
    return np.column_stack([np.log1p(mean), np.log1p(squared_cv), detected.mean(axis=1), np.log1p(mean_where_detected)])


def gene_pca_random_forest(split: BaselineFold, settings: PcaForestSettings, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Genes' expression profiles reduced by PCA (fitted on training genes), then a random forest."""
    n_components = min(settings.n_components, min(split.train_features.shape) - 1)
    if n_components < 1:
        raise InputError("gene_pca_rf", "too few training genes or cells for PCA", "label more genes or use more cells")
    pca = PCA(n_components=n_components, random_state=seed)
    forest = RandomForestClassifier(n_estimators=settings.n_estimators, random_state=seed, n_jobs=1)
    forest.fit(pca.fit_transform(split.train_features), split.train_labels)
    return forest.classes_, forest.predict_proba(pca.transform(split.test_features))


def gene_statistics_logistic_regression(split: BaselineFold, settings: LogisticSettings, seed: int
                                        ) -> tuple[np.ndarray, np.ndarray]:
    """Standardized expression statistics of each gene, then logistic regression."""
    scaler = StandardScaler()
    train_features = scaler.fit_transform(gene_expression_statistics(split.train_features))
    test_features = scaler.transform(gene_expression_statistics(split.test_features))
    model = LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=seed)
    model.fit(train_features, split.train_labels)
    return model.classes_, model.predict_proba(test_features)


BASELINES: dict[str, Callable[[BaselineFold, Any, int], tuple[np.ndarray, np.ndarray]]] = {
    "pca_rf": pca_random_forest,
    "logreg_hvg": logistic_regression_hvg,
    "gene_pca_rf": gene_pca_random_forest,
    "gene_stats_logreg": gene_statistics_logistic_regression,
}  # kind -> (fold, the kind's settings, seed) -> (classes, probabilities); settings.OPTIONS_OF_KIND types them


def run_baseline(task: str, h5ad_path: str | Path, folds_tsv: str | Path, fold: int, settings: BaselineSettings,
                 seed: int, output_predictions: str | Path, tokenized_dir: str | Path | None = None,
                 cells_tsv: str | Path | None = None) -> None:
    """Train the baseline on every fold but `fold` and write the held-out fold's predictions.tsv.
    Gene tasks also read the tokenized dataset and cells.tsv."""
    experiment_task = task_named(task)
    if settings.kind not in experiment_task.baseline_kinds:
        raise InputError("--settings.kind", f"'{settings.kind}' is not a baseline of {task}",
                         f"use one of {list(experiment_task.baseline_kinds)}")
    split = experiment_task.baseline_fold(h5ad_path, folds_tsv, fold, tokenized_dir, cells_tsv)
    model_classes, model_probabilities = BASELINES[settings.kind](split, settings.options, seed)
    write_tsv(split.predictions(spread_probabilities(split.classes, model_classes, model_probabilities)),
              output_predictions)
