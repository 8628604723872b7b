"""The PCA baseline of embedded cells and the scores of embeddings, without torch (data jobs).

`pca_embedding` writes the PCA baseline for the cells an extract_embeddings h5ad holds, and
`score_embeddings` compares embeddings: how well they separate a label (euclidean silhouette,
cross-validated kNN accuracy) and how well they mix batches (scIB batch ASW, kNN batch mixing), with a
grid of UMAPs. Every embedding h5ad has the same layout (write_embedding_h5ad): obs = cells (index
cell_id) with label columns, obsm[EMBEDDING_KEY] = float32 embedding, uns = what produced it
(uns["method"]: geneformer or pca).
"""

from __future__ import annotations

import math
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    silhouette_samples,
    silhouette_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from ..core.counts import log_normalize, open_backed, read_h5ad, read_obs
from ..core.errors import InputError
from ..core.outputs import atomic_path
from .settings import EmbeddingSettings

EMBEDDING_KEY = "X_geneformer"  # obsm key of every scored embedding h5ad, the PCA baseline's included
KNN_NEIGHBOURS = 15
KNN_FOLDS = 5
MAX_SILHOUETTE_CELLS = 5000  # silhouettes cost cells^2: a seeded sample beyond this


def sample_cells(n_cells: int, max_cells: int | None, seed: int) -> np.ndarray:
    """Row indices of at most `max_cells` cells drawn without replacement under `seed`, in dataset order."""
    if max_cells is None or max_cells >= n_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, size=max_cells, replace=False))


def write_embedding_h5ad(obs: pd.DataFrame, embedding: np.ndarray, uns: dict, output_h5ad: str | Path) -> None:
    """The layout every scored embedding shares: obs (cells, labels), obsm[EMBEDDING_KEY] float32, uns."""
    adata = anndata.AnnData(obs=obs, obsm={EMBEDDING_KEY: np.ascontiguousarray(embedding, dtype=np.float32)},
                            uns=uns)
    with atomic_path(output_h5ad) as temporary:
        adata.write_h5ad(temporary)


# --- the PCA baseline ------------------------------------------------------------------------------


def pca_embedding(h5ad_path: str | Path, cells_h5ad: str | Path, settings: EmbeddingSettings, seed: int,
                  output_h5ad: str | Path) -> None:
    """PCA (settings.pca_components) of log1p(count / n_counts * 1e4) for the cells of `cells_h5ad` (an
    extract_embeddings h5ad), in its order and with its obs, so the baseline is scored on the very
    same cells.

    ARPACK centres the sparse matrix implicitly; components are capped below min(cells, genes).
    """
    obs = read_obs(cells_h5ad)
    with open_backed(h5ad_path) as adata:
        rows = adata.obs_names.get_indexer(obs.index)
        if (rows < 0).any():
            raise InputError(str(cells_h5ad), f"{int((rows < 0).sum())} cells are not in {h5ad_path}, e.g. "
                             f"{list(obs.index[rows < 0][:3])}", "embed cells of this dataset")
        if "n_counts" not in adata.obs.columns:
            raise InputError(str(h5ad_path), "lacks obs['n_counts']", "prepare the dataset so it holds row sums")
        reading_order = np.argsort(rows, kind="stable")
        counts = sp.csr_matrix(adata.X[rows[reading_order]])[np.argsort(reading_order)]
        n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)[rows]
    if not (n_counts > 0).all():
        raise InputError(str(h5ad_path), "has cells with n_counts <= 0", "filter out empty cells")
    n_components = min(settings.pca_components, min(counts.shape) - 1)
    if n_components < 1:
        raise InputError(str(cells_h5ad), "too few cells or genes for PCA", "embed more cells")
    pca = PCA(n_components=n_components, svd_solver="arpack", random_state=seed)
    embedding = pca.fit_transform(log_normalize(counts, n_counts))
    uns = {"method": "pca", "source": str(h5ad_path), "n_components": n_components, "seed": seed,
           "normalization": "log1p(count / n_counts * 1e4)", "variance_ratio": pca.explained_variance_ratio_}
    write_embedding_h5ad(obs, embedding, uns, output_h5ad)


# --- scores and UMAPs ------------------------------------------------------------------------------


def knn_label_scores(matrix: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """Accuracy and macro F1 of a 15-nearest-neighbour (euclidean) label vote, out of fold under
    stratified CV (5 folds, fewer when the rarest label has fewer cells)."""
    n_splits = int(np.clip(np.unique(labels, return_counts=True)[1].min(), 2, KNN_FOLDS))
    n_neighbours = min(KNN_NEIGHBOURS, len(labels) - math.ceil(len(labels) / n_splits))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    predicted = cross_val_predict(KNeighborsClassifier(n_neighbors=n_neighbours), matrix, labels, cv=folds)
    return {"knn_accuracy": float(accuracy_score(labels, predicted)),
            "knn_macro_f1": float(f1_score(labels, predicted, average="macro"))}


def batch_silhouette(matrix: np.ndarray, labels: np.ndarray, batches: np.ndarray) -> float:
    """scIB's batch ASW: within each label, 1 - |silhouette by batch| averaged over its cells, then over the
    labels (skipping labels in one batch only, or with one cell per batch); 1 = batches mixed."""
    per_label = []
    for label in np.unique(labels):  # one silhouette per label: few labels, vectorized inside
        in_label = labels == label
        n_batches = np.unique(batches[in_label]).size
        if 1 < n_batches < in_label.sum():
            per_label.append(np.mean(1 - np.abs(silhouette_samples(matrix[in_label], batches[in_label]))))
    return float(np.mean(per_label)) if per_label else math.nan


def knn_batch_mixing(matrix: np.ndarray, batches: np.ndarray) -> float:
    """Fraction of each cell's 15 nearest neighbours from another batch, over the fraction expected if
    neighbours were drawn at random (1 = as mixed as chance, 0 = batches apart). Across all labels, so a
    batch that differs in labels lowers it too."""
    _, codes = np.unique(batches, return_inverse=True)
    n_cells = len(codes)
    batch_sizes = np.bincount(codes)
    if batch_sizes.size < 2:
        return math.nan
    neighbours = NearestNeighbors(n_neighbors=min(KNN_NEIGHBOURS, n_cells - 1)).fit(matrix).kneighbors(
        return_distance=False)  # without X: a cell is not its own neighbour
    observed = (codes[neighbours] != codes[:, None]).mean()
    expected = ((n_cells - batch_sizes[codes]) / (n_cells - 1)).mean()
    return float(observed / expected)


def embedding_scores(matrix: np.ndarray, labels: np.ndarray, batches: np.ndarray | None, seed: int
                     ) -> dict[str, float]:
    """Label separation (euclidean silhouette, kNN accuracy and macro F1) and, with batches, batch mixing
    (batch ASW, kNN batch mixing). Silhouettes use a seeded sample of at most MAX_SILHOUETTE_CELLS cells."""
    sample = sample_cells(len(labels), MAX_SILHOUETTE_CELLS, seed)
    scores = {"label_silhouette": float(silhouette_score(matrix[sample], labels[sample], metric="euclidean"))
              if np.unique(labels[sample]).size > 1 else math.nan,
              **knn_label_scores(matrix, labels, seed)}
    if batches is None:
        return {**scores, "batch_asw": math.nan, "knn_batch_mixing": math.nan}
    return {**scores, "batch_asw": batch_silhouette(matrix[sample], labels[sample], batches[sample]),
            "knn_batch_mixing": knn_batch_mixing(matrix, batches)}


def umap_coordinates(matrix: np.ndarray, seed: int) -> np.ndarray:
    """2-D UMAP of an embedding (scanpy: 15-neighbour graph, then umap), seeded."""
    import scanpy

    adata = anndata.AnnData(obs=pd.DataFrame(index=np.arange(len(matrix)).astype(str)),
                            obsm={"X_embedding": np.asarray(matrix, dtype=np.float32)})
    scanpy.pp.neighbors(adata, n_neighbors=min(KNN_NEIGHBOURS, len(matrix) - 1), use_rep="X_embedding",
                        random_state=seed)
    scanpy.tl.umap(adata, random_state=seed)
    return adata.obsm["X_umap"]


def read_scored_embedding(name: str, path: str | Path, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    adata = read_h5ad(path)
    if EMBEDDING_KEY not in adata.obsm:
        raise InputError(str(path), f"has no obsm['{EMBEDDING_KEY}'] (embedding '{name}')",
                         "score files written by extract_embeddings or pca_embedding")
    missing = [column for column in columns if column not in adata.obs.columns]
    if missing:
        raise InputError(str(path), f"obs lacks {missing} (columns: {', '.join(adata.obs.columns)})",
                         "extract embeddings with these obs_columns")
    return np.asarray(adata.obsm[EMBEDDING_KEY], dtype=np.float32), adata.obs[columns].astype(str)


def score_embeddings(embeddings: list, settings: EmbeddingSettings, seed: int, output_csv: str | Path,
                     output_png: str | Path) -> None:
    """Score each [name, h5ad] embedding (one CSV row each: see embedding_scores) and draw their UMAPs,
    one column per embedding, coloured by settings.label_column (row 1) and by settings.batch_column
    (row 2, when given)."""
    from ..core.style import DPI
    from .figures import plot_umap_grid

    if not embeddings or any(len(entry) != 2 for entry in embeddings) or \
            len({name for name, _ in embeddings}) != len(embeddings):
        raise InputError("embeddings", "must be a non-empty list of [name, h5ad path] with distinct names",
                         'pass e.g. [["geneformer", "a.h5ad"], ["pca", "b.h5ad"]]')
    label_column, batch_column = settings.label_column, settings.batch_column
    columns = settings.obs_columns
    rows, umaps, labels_by_name, batches_by_name = [], {}, {}, {}
    for name, path in embeddings:
        matrix, obs = read_scored_embedding(name, path, columns)
        labels = obs[label_column].to_numpy()
        if np.unique(labels).size < 2:
            raise InputError(str(path), f"obs['{label_column}'] holds fewer than two labels",
                             "score with a label column that separates cells")
        batches = obs[batch_column].to_numpy() if batch_column else None
        scores = embedding_scores(matrix, labels, batches, seed)
        rows.append({"embedding": name, "n_cells": len(labels), "label_column": label_column,
                     "batch_column": batch_column or "", **scores})
        umaps[name], labels_by_name[name] = umap_coordinates(matrix, seed), labels
        if batches is not None:
            batches_by_name[name] = batches
    table = pd.DataFrame(rows)
    with atomic_path(output_csv) as temporary:
        table.to_csv(temporary, index=False)
    by_name = table.set_index("embedding")
    panel_rows = [(label_column, labels_by_name, {
        name: f"{name}\nlabel ASW {row.label_silhouette:.2f}, kNN acc {row.knn_accuracy:.2f}"
        for name, row in by_name.iterrows()})]
    if batch_column:
        panel_rows.append((batch_column, batches_by_name, {
            name: f"{name}\nbatch ASW {row.batch_asw:.2f}, kNN mixing {row.knn_batch_mixing:.2f}"
            for name, row in by_name.iterrows()}))
    with atomic_path(output_png) as temporary:
        plot_umap_grid(umaps, panel_rows, seed).savefig(temporary, dpi=DPI, bbox_inches="tight")
