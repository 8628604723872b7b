"""Classical baselines a fine-tuned Geneformer must beat, trained and scored on the same folds.

Cell tasks: PCA + random forest (BioNeMo's "scRNA workflow" baseline) and logistic regression on
highly variable genes (which matches or beats scGPT on the pancreas benchmark). Gene tasks: each
gene described by its expression across the training cells, either its profile reduced by PCA +
random forest, or summary statistics (level, dispersion, detection) + logistic regression. Every
fitted step sees the training cells or genes only, so held-out labels cannot leak into the model.
Gene predictions are written per held-out token in the test cells, the unit the fine-tuned token
classifier is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ..core.batching import load_tokenized
from ..core.counts import gene_ids_of, log_normalize
from ..core.errors import InputError
from ..core.folds import class_order, read_folds
from ..core.genes import labelled_positions, read_cell_roles, token_label_lookup
from ..core.outputs import predictions_table, write_tsv


@dataclass(frozen=True)
class FoldSplit:
    """Log-normalized expression and labels of one fold's training and held-out cells."""

    train_expression: sp.csr_matrix
    train_labels: np.ndarray
    test_expression: sp.csr_matrix
    test_labels: np.ndarray
    test_cell_ids: np.ndarray
    classes: list[str]


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
    import scanpy as sc  # 2 s to import: only the jobs that select HVGs pay for it

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


def spread_probabilities(classes: list[str], model_classes: np.ndarray, model_probabilities: np.ndarray) -> np.ndarray:
    """Probabilities on the experiment's class order (classes the model never saw in training get 0)."""
    probabilities = np.zeros((len(model_probabilities), len(classes)))
    probabilities[:, [classes.index(label) for label in model_classes]] = model_probabilities
    return probabilities


@dataclass(frozen=True)
class GeneSplit:
    """Expression profiles (gene x training cell, log-normalized) of one fold's training and held-out genes."""

    train_profiles: np.ndarray
    train_labels: np.ndarray
    test_profiles: np.ndarray
    test_labels: np.ndarray


def gene_expression_statistics(profiles: np.ndarray) -> np.ndarray:
    """Per gene: log mean, log squared coefficient of variation, detected fraction, log mean where detected."""
    detected = profiles > 0
    mean = profiles.mean(axis=1)
    squared_cv = profiles.var(axis=1) / np.maximum(mean, 1e-12) ** 2
    mean_where_detected = profiles.sum(axis=1) / np.maximum(detected.sum(axis=1), 1)
    return np.column_stack([np.log1p(mean), np.log1p(squared_cv), detected.mean(axis=1), np.log1p(mean_where_detected)])


def gene_pca_random_forest(split: GeneSplit, settings: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Genes' expression profiles reduced by PCA (fitted on training genes), then a random forest."""
    n_components = min(settings["n_components"], min(split.train_profiles.shape) - 1)
    if n_components < 1:
        raise InputError("gene_pca_rf", "too few training genes or cells for PCA", "label more genes or use more cells")
    pca = PCA(n_components=n_components, random_state=seed)
    forest = RandomForestClassifier(n_estimators=settings["n_estimators"], random_state=seed, n_jobs=1)
    forest.fit(pca.fit_transform(split.train_profiles), split.train_labels)
    return forest.classes_, forest.predict_proba(pca.transform(split.test_profiles))


def gene_statistics_logistic_regression(split: GeneSplit, settings: dict[str, Any], seed: int
                                        ) -> tuple[np.ndarray, np.ndarray]:
    """Standardized expression statistics of each gene, then logistic regression."""
    scaler = StandardScaler()
    train_features = scaler.fit_transform(gene_expression_statistics(split.train_profiles))
    test_features = scaler.transform(gene_expression_statistics(split.test_profiles))
    model = LogisticRegression(C=settings["C"], max_iter=settings["max_iter"], random_state=seed)
    model.fit(train_features, split.train_labels)
    return model.classes_, model.predict_proba(test_features)


BASELINES = {
    "pca_rf": pca_random_forest,
    "logreg_hvg": logistic_regression_hvg,
    "gene_pca_rf": gene_pca_random_forest,
    "gene_stats_logreg": gene_statistics_logistic_regression,
}
REQUIRED_SETTINGS = {
    "pca_rf": ("n_components", "n_estimators"),
    "logreg_hvg": ("n_top_genes", "C", "max_iter"),
    "gene_pca_rf": ("n_components", "n_estimators"),
    "gene_stats_logreg": ("C", "max_iter"),
}
GENE_BASELINES = ("gene_pca_rf", "gene_stats_logreg")


def check_baseline(kind: str, settings: dict, task_kinds: tuple[str, ...]) -> None:
    if kind not in task_kinds:
        raise InputError("baseline kind", f"unknown kind '{kind}' for this task", f"use one of {list(task_kinds)}")
    missing_settings = [key for key in REQUIRED_SETTINGS[kind] if key not in settings]
    if missing_settings:
        raise InputError(f"{kind} settings", f"lack {missing_settings}", "pass the validated baselines.<kind> config")


def run_baseline(
    kind: str,
    h5ad_path: str | Path,
    folds_tsv: str | Path,
    fold: int,
    settings: dict,
    seed: int,
    output_predictions: str | Path,
) -> None:
    """Cell task: train a baseline on every fold but `fold`, predict the held-out fold, write predictions.tsv."""
    check_baseline(kind, settings, tuple(name for name in BASELINES if name not in GENE_BASELINES))
    split = load_fold_split(h5ad_path, folds_tsv, fold)
    model_classes, model_probabilities = BASELINES[kind](split, settings, seed)
    probabilities = spread_probabilities(split.classes, model_classes, model_probabilities)
    write_tsv(predictions_table({"cell_id": split.test_cell_ids}, split.test_labels, split.classes, probabilities),
              output_predictions)


def run_gene_baseline(kind: str, h5ad_path: str | Path, tokenized_dir: str | Path, folds_tsv: str | Path,
                      cells_tsv: str | Path, fold: int, settings: dict, seed: int, output_predictions: str | Path
                      ) -> None:
    """Gene task: describe genes by their expression in the training cells, train on every fold but
    `fold`, and write the held-out genes' probabilities at each of their tokens in the test cells."""
    check_baseline(kind, settings, GENE_BASELINES)
    genes = read_folds(folds_tsv, id_column="ensembl_id")
    classes = class_order(genes)
    tokens, dataset = load_tokenized(tokenized_dir)
    cell_ids = np.asarray(dataset["cell_id"])
    roles = read_cell_roles(cells_tsv, cell_ids)
    adata = ad.read_h5ad(h5ad_path)
    columns = pd.Index(gene_ids_of(adata.var)).get_indexer(genes["ensembl_id"])
    if (columns < 0).any():
        raise InputError(str(folds_tsv), f"{int((columns < 0).sum())} genes are not in {h5ad_path}", "rebuild the gene folds")
    cell_rows = adata.obs_names.get_indexer(cell_ids[roles["train"]])
    counts = sp.csr_matrix(adata.X)[cell_rows]
    profiles = log_normalize(counts, adata.obs["n_counts"].to_numpy(dtype=np.float64)[cell_rows])[:, columns]
    profiles = np.asarray(profiles.T.todense())
    held_out = (genes["fold"] == fold).to_numpy()
    labels = genes["label"].to_numpy()
    split = GeneSplit(profiles[~held_out], labels[~held_out], profiles[held_out], labels[held_out])
    model_classes, model_probabilities = BASELINES[kind](split, settings, seed)
    gene_probabilities = spread_probabilities(classes, model_classes, model_probabilities)

    token_ids = genes["token_id"].to_numpy(dtype=np.int64)[held_out]
    label_ids = genes["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()[held_out]
    vocab_size = int(max(tokens.values.max(initial=0), token_ids.max(initial=0))) + 1
    rows, position_tokens = labelled_positions(tokens, roles["test"], token_label_lookup(token_ids, label_ids, vocab_size))
    gene_index = pd.Series(np.arange(len(token_ids)), index=token_ids).loc[position_tokens].to_numpy()
    ids = {"cell_id": cell_ids[rows], "ensembl_id": genes["ensembl_id"].to_numpy()[held_out][gene_index]}
    write_tsv(predictions_table(ids, labels[held_out][gene_index], classes, gene_probabilities[gene_index]),
              output_predictions)
