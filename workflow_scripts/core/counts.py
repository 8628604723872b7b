"""Streaming reader of a raw-count h5ad: the one place that reads counts, and validates them.

Gene medians, the tokenizer and the preflight all read counts through `iter_count_chunks`, so
they accept and refuse exactly the same files. The file is opened with h5py (on disk) and read a
slice of rows at a time, so memory follows the chunk size, not the number of cells.
`obs['n_counts']` is read from the file, as Geneformer's tokenizer does, never recomputed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from .errors import InputError

TARGET_SUM = 10_000.0  # Geneformer scales every cell to 10,000 counts before dividing by medians
_RAW_COUNTS_FIX = "pass raw integer counts, e.g. from .raw or layers['counts'] (adata.X = adata.layers['counts'])"


@dataclass(frozen=True)
class CountChunk:
    """Rows [start, start + matrix.shape[0]) of the file: canonical CSR counts and their n_counts."""

    start: int
    matrix: sp.csr_matrix
    n_counts: np.ndarray


def _existing(h5ad_path: str | Path) -> Path:
    path = Path(h5ad_path)
    if not path.is_file():
        raise InputError(str(path), "file not found", "check the dataset path in the config")
    return path


def _unreadable(path: str | Path, error: Exception) -> InputError:
    return InputError(
        str(path), f"not a readable h5ad file ({type(error).__name__}: {error})", "rewrite it with anndata.write_h5ad"
    )


def read_h5ad(h5ad_path: str | Path, backed: str | None = None) -> anndata.AnnData:
    """Read an h5ad (in memory, or backed='r' on disk); a missing or unreadable file is an InputError."""
    path = _existing(h5ad_path)
    try:
        return anndata.read_h5ad(path, backed=backed)
    except Exception as error:  # h5py and anndata raise many types for a damaged file
        raise _unreadable(path, error) from error


@contextlib.contextmanager
def open_backed(h5ad_path: str | Path) -> Iterator[anndata.AnnData]:
    """Open an h5ad backed (read-only, on disk), closing it afterwards."""
    adata = read_h5ad(h5ad_path, backed="r")
    try:
        yield adata
    finally:
        adata.file.close()


def gene_ids_of(var: pd.DataFrame) -> np.ndarray:
    """A canonical file's gene identifiers: var['ensembl_id'] when present, else the var index, as str."""
    return (var["ensembl_id"] if "ensembl_id" in var.columns else var.index).astype(str).to_numpy()


@contextlib.contextmanager
def _open_h5(h5ad_path: str | Path) -> Iterator[h5py.File]:
    """The h5ad opened read-only with h5py (closed afterwards): the streaming readers take rows and
    tables from it directly, which costs a fraction of anndata's backed slicing per chunk."""
    path = _existing(h5ad_path)
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise _unreadable(path, error) from error
    try:
        yield file
    finally:
        file.close()


def _element(file: h5py.File, name: str):
    """One stored element (a table, or one of its columns) of an open h5ad, as anndata reads it."""
    try:
        return anndata.io.read_elem(file[name])
    except Exception as error:  # h5py and anndata raise many types for a damaged file
        raise _unreadable(file.filename, error) from error


def read_gene_ids(h5ad_path: str | Path) -> np.ndarray:
    with _open_h5(h5ad_path) as file:
        return gene_ids_of(_element(file, "var"))


def read_obs(h5ad_path: str | Path) -> pd.DataFrame:
    """The file's obs table (cell metadata; small next to the counts)."""
    with _open_h5(h5ad_path) as file:
        return _element(file, "obs")


def _n_counts(file: h5py.File, source: str) -> np.ndarray:
    """obs['n_counts'], read alone (not the whole obs table)."""
    if "n_counts" not in file.get("obs", {}):
        raise InputError(
            source,
            "obs['n_counts'] is missing (Geneformer normalizes by the cell's total raw counts)",
            "add it as row sums of the raw counts: adata.obs['n_counts'] = adata.X.sum(axis=1).A1",
        )
    column = pd.Series(_element(file, "obs/n_counts"))
    if not pd.api.types.is_numeric_dtype(column):
        raise InputError(source, f"obs['n_counts'] has dtype {column.dtype}, not numeric", "store row sums as numbers")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


RowReader = Callable[[int, int], sp.csr_matrix | np.ndarray]  # rows [start, stop) of X


def _row_reader(file: h5py.File, source: str) -> tuple[tuple[int, int], RowReader]:
    """X's shape and a function reading rows [start, stop) of it; refused when rows cannot be read
    without loading the whole matrix."""
    matrix = file.get("X")
    if isinstance(matrix, h5py.Dataset) and matrix.ndim == 2:
        return matrix.shape, lambda start, stop: matrix[start:stop]
    try:
        sparse = anndata.io.sparse_dataset(matrix)
    except Exception:  # not a group anndata can read as a sparse matrix
        raise InputError(source, "the file has no X matrix", "store the raw counts in X") from None
    if sparse.format == "csc":
        raise InputError(
            source,
            "X is stored as CSC, so rows cannot be streamed without loading the whole matrix",
            "store X as CSR: adata.X = adata.X.tocsr(); adata.write_h5ad(path)",
        )
    data, indices, indptr = matrix["data"], matrix["indices"], matrix["indptr"]
    n_genes = sparse.shape[1]

    def read_rows(start: int, stop: int) -> sp.csr_matrix:
        row_starts = indptr[start:stop + 1]
        first, last = int(row_starts[0]), int(row_starts[-1])
        return sp.csr_matrix(
            (data[first:last], indices[first:last], row_starts - first), shape=(stop - start, n_genes)
        )

    return sparse.shape, read_rows


def count_problem(data: np.ndarray, integer_tolerance: float = 0.0) -> str | None:
    """Why stored matrix values are not raw counts (None when they are): the one test every reader uses.
    `integer_tolerance` admits float rounding noise in files that are then rounded."""
    is_float = np.issubdtype(data.dtype, np.floating)
    if not (is_float or np.issubdtype(data.dtype, np.integer)):
        return f"values of dtype {data.dtype}"
    if is_float and not np.isfinite(data).all():
        return "non-finite (NaN or infinite) values"
    if (data < 0).any():
        return f"negative values (min {data.min():g})"
    if is_float:
        off = np.abs(data - np.rint(data)) > integer_tolerance
        if off.any():
            return f"non-integer values (e.g. {data[np.flatnonzero(off)[0]]:g})"
    return None


def _validated_chunk(block, n_counts: np.ndarray, start: int, source: str) -> CountChunk:
    """Check one slice of rows holds raw counts and usable n_counts; return it as canonical CSR."""
    matrix = sp.csr_matrix(block)
    stop = start + matrix.shape[0]
    problem = count_problem(matrix.data)
    if problem is not None:
        raise InputError(source, f"matrix is not raw counts: {problem} in rows {start}-{stop - 1}", _RAW_COUNTS_FIX)
    if not np.isfinite(n_counts).all() or (n_counts <= 0).any():
        bad = start + int(np.flatnonzero(~(np.isfinite(n_counts) & (n_counts > 0)))[0])
        raise InputError(
            source,
            f"obs['n_counts'] must be positive and finite; cell {bad} has {n_counts[bad - start]}",
            "filter cells with no counts and recompute n_counts as row sums of the raw counts",
        )
    matrix.sum_duplicates()
    if not matrix.data.all():  # stored zeros are rare, and scipy's pass to drop them costs 8x this check
        matrix.eliminate_zeros()
    return CountChunk(start=start, matrix=matrix, n_counts=n_counts)


def iter_count_chunks(h5ad_path: str | Path, chunk_size: int, progress: str | None = None) -> Iterator[CountChunk]:
    """Yield validated row chunks of raw counts; `progress` labels a tqdm bar (None: no bar)."""
    source = str(h5ad_path)
    with _open_h5(h5ad_path) as file:
        n_counts = _n_counts(file, source)
        (n_cells, n_genes), read_rows = _row_reader(file, source)
        if n_cells == 0 or n_genes == 0:
            raise InputError(source, f"the matrix is empty ({n_cells} cells x {n_genes} genes)", "pass cells and genes")
        starts = range(0, n_cells, chunk_size)
        for start in tqdm(starts, desc=progress, unit="chunk", file=sys.stderr, disable=progress is None):
            stop = min(start + chunk_size, n_cells)
            try:
                block = read_rows(start, stop)
            except (OSError, KeyError, ValueError) as error:
                raise InputError(
                    source, f"rows {start}-{stop - 1} cannot be read ({error})", "rewrite it with anndata.write_h5ad"
                ) from error
            yield _validated_chunk(block, n_counts[start:stop], start, source)


def check_counts_file(h5ad_path: str | Path, chunk_size: int) -> tuple[dict[str, int], np.ndarray]:
    """Stream the whole file through the same validation as the readers; return its size and each
    gene's (column's) total count, which tell how much of the data a vocabulary keeps."""
    n_cells = nnz = 0
    gene_totals = None
    for chunk in iter_count_chunks(h5ad_path, chunk_size, progress="check counts"):
        n_cells += chunk.matrix.shape[0]
        nnz += chunk.matrix.nnz
        totals = np.bincount(chunk.matrix.indices, weights=chunk.matrix.data, minlength=chunk.matrix.shape[1])
        gene_totals = totals if gene_totals is None else gene_totals + totals
    return {"n_cells": n_cells, "n_genes": gene_totals.size, "nnz": nnz}, gene_totals


def normalized_counts(counts: np.ndarray, n_counts: np.ndarray) -> np.ndarray:
    """count / n_counts * 10,000, evaluated in Geneformer's order, so medians and ranks computed from it
    are bit-identical to a dense numpy computation of the same formula."""
    values = np.divide(counts, n_counts, dtype=np.float64)
    values *= TARGET_SUM
    return values


def entry_rows(genes_per_cell: np.ndarray) -> np.ndarray:
    """Row (cell within the chunk) of each stored entry, from each row's number of entries."""
    return np.repeat(np.arange(genes_per_cell.size), genes_per_cell)


def normalized_entries(chunk: CountChunk) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero entries of a chunk as (gene column, normalized count)."""
    matrix = chunk.matrix
    cell_n_counts = np.repeat(chunk.n_counts, np.diff(matrix.indptr))
    return matrix.indices.astype(np.int64), normalized_counts(matrix.data, cell_n_counts)


def log_normalize(counts: sp.spmatrix, n_counts: np.ndarray) -> sp.csr_matrix:
    """log1p(count / n_counts * 1e4), staying sparse (zeros stay zeros)."""
    scaled = sp.csr_matrix(sp.diags(TARGET_SUM / n_counts) @ counts.astype(np.float64))
    scaled.data = np.log1p(scaled.data)
    return scaled
