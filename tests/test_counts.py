"""The streaming count reader: chunks reassemble the file, and every bad input is refused by name."""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workflow_scripts.core.counts import (
    check_counts_file,
    iter_count_chunks,
    read_gene_ids,
)
from workflow_scripts.core.errors import InputError


def random_counts(n_cells: int, n_genes: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.6, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < 0.4)
    dense[:, 0] += 1  # every cell has counts
    return sp.csr_matrix(dense.astype(np.int32))


def write_counts(
    path: Path, matrix, n_counts=None, var: pd.DataFrame | None = None, with_n_counts: bool = True
) -> Path:
    n_cells, n_genes = matrix.shape
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)])
    if with_n_counts:
        obs["n_counts"] = np.asarray(matrix.sum(axis=1)).ravel() if n_counts is None else n_counts
    if var is None:
        var = pd.DataFrame(index=[f"ENSG{i:011d}" for i in range(n_genes)])
    anndata.AnnData(X=matrix, obs=obs, var=var).write_h5ad(path)
    return path


@pytest.mark.parametrize("chunk_size", [1, 4, 13, 1000])
def test_chunks_reassemble_the_file(tmp_path, chunk_size):
    matrix = random_counts(13, 9)
    n_counts = np.asarray(matrix.sum(axis=1)).ravel() + 0.5  # read from the file, never recomputed
    path = write_counts(tmp_path / "counts.h5ad", matrix, n_counts=n_counts)
    chunks = list(iter_count_chunks(path, chunk_size))
    assert [chunk.start for chunk in chunks] == list(range(0, 13, chunk_size))
    assert all(isinstance(chunk.matrix, sp.csr_matrix) for chunk in chunks)
    np.testing.assert_array_equal(sp.vstack([chunk.matrix for chunk in chunks]).toarray(), matrix.toarray())
    np.testing.assert_array_equal(np.concatenate([chunk.n_counts for chunk in chunks]), n_counts)
    assert np.concatenate([chunk.n_counts for chunk in chunks]).dtype == np.float64


def test_chunks_are_canonical_without_explicit_zeros(tmp_path):
    data = np.array([2, 0, 3, 1], dtype=np.int32)
    indices = np.array([1, 0, 1, 2])  # row 0 holds column 1 twice and an explicit zero
    matrix = sp.csr_matrix((data, indices, np.array([0, 3, 4])), shape=(2, 3))
    path = write_counts(tmp_path / "counts.h5ad", matrix, n_counts=np.array([5.0, 1.0]))
    (chunk,) = iter_count_chunks(path, 10)
    assert chunk.matrix.nnz == 2
    np.testing.assert_array_equal(chunk.matrix.toarray(), [[0, 5, 0], [0, 0, 1]])


def test_check_counts_file_reports_size_and_gene_totals(tmp_path):
    matrix = random_counts(11, 7)
    path = write_counts(tmp_path / "counts.h5ad", matrix)
    size, gene_totals = check_counts_file(path, 3)
    assert size == {"n_cells": 11, "n_genes": 7, "nnz": matrix.nnz}
    np.testing.assert_array_equal(gene_totals, np.asarray(matrix.sum(axis=0)).ravel())


def test_gene_ids_prefer_ensembl_id_column(tmp_path):
    matrix = random_counts(3, 2)
    plain = write_counts(tmp_path / "plain.h5ad", matrix)
    assert read_gene_ids(plain).tolist() == ["ENSG00000000000", "ENSG00000000001"]
    symbols = pd.DataFrame({"ensembl_id": ["ENSG0000000000A", "ENSG0000000000B"]}, index=["GENEA", "GENEB"])
    annotated = write_counts(tmp_path / "annotated.h5ad", matrix, var=symbols)
    gene_ids = read_gene_ids(annotated)
    assert gene_ids.tolist() == ["ENSG0000000000A", "ENSG0000000000B"]
    assert gene_ids.dtype.kind in "OU"


def float_matrix_with(value: float) -> sp.csr_matrix:
    matrix = random_counts(6, 4).astype(np.float32)
    matrix.data[-1] = value  # in the last row, so the error comes from a later chunk
    return matrix


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        (float_matrix_with(np.nan), "non-finite"),
        (float_matrix_with(np.inf), "non-finite"),
        (float_matrix_with(-2.0), "negative"),
        (float_matrix_with(1.5), "non-integer"),
    ],
)
@pytest.mark.parametrize("reader", ["iterate", "check"])
def test_refuses_values_that_are_not_raw_counts(tmp_path, matrix, expected, reader):
    path = write_counts(tmp_path / "normalized.h5ad", matrix, n_counts=np.full(matrix.shape[0], 10.0))
    with pytest.raises(InputError) as caught:
        if reader == "iterate":
            list(iter_count_chunks(path, 2))
        else:
            check_counts_file(path, 2)
    message = str(caught.value)
    assert str(path) in message and "not raw counts" in message and expected in message
    assert "layers['counts']" in message and "rows 4-5" in message


def test_integer_valued_floats_are_raw_counts(tmp_path):
    matrix = random_counts(5, 4).astype(np.float64)
    path = write_counts(tmp_path / "floats.h5ad", matrix)
    assert check_counts_file(path, 2)[0]["nnz"] == matrix.nnz


@pytest.mark.parametrize("bad_value", [0.0, -3.0, np.nan])
def test_refuses_unusable_n_counts(tmp_path, bad_value):
    matrix = random_counts(5, 3)
    n_counts = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    n_counts[3] = bad_value
    path = write_counts(tmp_path / "bad_n_counts.h5ad", matrix, n_counts=n_counts)
    with pytest.raises(InputError, match="n_counts") as caught:
        list(iter_count_chunks(path, 2))
    assert str(path) in str(caught.value) and "cell 3" in str(caught.value)


def test_refuses_missing_n_counts(tmp_path):
    path = write_counts(tmp_path / "no_n_counts.h5ad", random_counts(4, 3), with_n_counts=False)
    with pytest.raises(InputError) as caught:
        check_counts_file(path, 2)
    assert str(path) in str(caught.value) and "n_counts" in str(caught.value) and "row sums" in str(caught.value)


def test_refuses_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "missing.h5ad"
    with pytest.raises(InputError, match="file not found") as caught:
        check_counts_file(missing, 2)
    assert str(missing) in str(caught.value)
    corrupt = tmp_path / "corrupt.h5ad"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n this is not an hdf5 file" * 10)
    with pytest.raises(InputError, match="not a readable h5ad") as caught:
        check_counts_file(corrupt, 2)
    assert str(corrupt) in str(caught.value)
    with pytest.raises(InputError, match="not a readable h5ad"):
        read_gene_ids(corrupt)


def test_refuses_csc_matrix_that_cannot_be_streamed(tmp_path):
    path = write_counts(tmp_path / "csc.h5ad", sp.csc_matrix(random_counts(4, 3)))
    with pytest.raises(InputError, match="CSC") as caught:
        check_counts_file(path, 2)
    assert str(path) in str(caught.value)


def test_dense_matrix_is_streamed_as_csr(tmp_path):
    matrix = random_counts(5, 4)
    path = write_counts(tmp_path / "dense.h5ad", matrix.toarray())
    chunks = list(iter_count_chunks(path, 2))
    np.testing.assert_array_equal(sp.vstack([chunk.matrix for chunk in chunks]).toarray(), matrix.toarray())
