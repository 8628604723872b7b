"""Exact streamed gene medians against numpy, and the token/median reference with its refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workflow_scripts.core.dictionaries import (
    load_median_dictionary,
    load_token_dictionary,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.sections import TokenizerSettings
from workflow_scripts.reference import medians as medians_module
from workflow_scripts.reference.medians import build_reference, compute_gene_medians
from workflow_scripts.reference.settings import ReferenceSettings


def tokenizer(chunk_size: int = 512, special_tokens: bool = False) -> TokenizerSettings:
    """The tokenizer settings: the medians read chunk_size, the reference special_tokens."""
    return TokenizerSettings(model_input_size=2048, special_tokens=special_tokens, chunk_size=chunk_size)


def write_counts(path: Path, dense: np.ndarray, n_counts: np.ndarray, gene_ids: list[str]) -> Path:
    obs = pd.DataFrame({"n_counts": n_counts}, index=[f"cell{i}" for i in range(dense.shape[0])])
    anndata.AnnData(X=sp.csr_matrix(dense.astype(np.int32)), obs=obs, var=pd.DataFrame(index=gene_ids)).write_h5ad(path)
    return path


def awkward_counts(n_cells: int, n_genes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse counts with genes never detected, detected once, and even and odd detection counts."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.02, 0.6, size=n_genes)
    dense = rng.geometric(0.5, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < density)
    dense[:, :2] = 0  # never detected
    dense[:, 2] = 0
    dense[n_cells // 2, 2] = 4  # detected in a single cell
    n_counts = dense.sum(axis=1) + rng.integers(1, 400, size=n_cells)  # other genes of the cell
    return dense, n_counts.astype(np.float64)


def numpy_medians(dense: np.ndarray, n_counts: np.ndarray) -> np.ndarray:
    """Reference: np.median of each gene's non-zero count / n_counts * 10,000."""
    normalized = dense / n_counts[:, None] * 10_000
    return np.array([np.median(normalized[dense[:, g] > 0, g]) if (dense[:, g] > 0).any() else np.nan
                     for g in range(dense.shape[1])])


def read_medians(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", float_precision="round_trip")


def gene_names(n_genes: int) -> list[str]:
    return [f"ENSG{i:011d}" for i in range(n_genes)]


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 137, 1000])
def test_medians_match_numpy_exactly(tmp_path, chunk_size):
    dense, n_counts = awkward_counts(137, 23, seed=chunk_size)
    n_detected = (dense > 0).sum(axis=0)
    assert (n_detected[n_detected > 1] % 2 == 0).any() and (n_detected[n_detected > 1] % 2 == 1).any()
    path = write_counts(tmp_path / "corpus.h5ad", dense, n_counts, gene_names(23))
    compute_gene_medians(path, tmp_path / "medians.tsv", tokenizer(chunk_size))
    table = read_medians(tmp_path / "medians.tsv")
    assert list(table.columns) == ["ensembl_id", "median", "n_cells_detected"]
    expected = numpy_medians(dense, n_counts)
    detected = n_detected > 0
    assert table["ensembl_id"].tolist() == list(np.array(gene_names(23))[detected])
    np.testing.assert_array_equal(table["median"].to_numpy(), expected[detected])
    np.testing.assert_array_equal(table["n_cells_detected"].to_numpy(), n_detected[detected])


@pytest.mark.parametrize("chunk_size", [3, 400])
def test_histogram_passes_stay_exact(tmp_path, monkeypatch, chunk_size):
    """A tiny selection budget forces the histogram passes (and single-pattern intervals) to run."""
    dense, n_counts = awkward_counts(301, 17, seed=3)
    dense[:, 5] = np.where(dense[:, 5] > 0, 2, 0)  # many equal values when n_counts are equal
    n_counts[::2] = 1000.0
    passes = []
    narrow = medians_module._narrow
    monkeypatch.setattr(medians_module, "SELECTION_BUDGET", 6)
    monkeypatch.setattr(medians_module, "_narrow", lambda *args: passes.append(args[-1]) or narrow(*args))
    path = write_counts(tmp_path / "corpus.h5ad", dense, n_counts, gene_names(17))
    compute_gene_medians(path, tmp_path / "medians.tsv", tokenizer(chunk_size))
    assert len(passes) >= 2, passes
    expected = numpy_medians(dense, n_counts)
    computed = read_medians(tmp_path / "medians.tsv")["median"].to_numpy()
    np.testing.assert_array_equal(computed, expected[~np.isnan(expected)])


def test_undetected_genes_are_left_out_and_logged(tmp_path, caplog):
    dense, n_counts = awkward_counts(20, 6, seed=1)
    path = write_counts(tmp_path / "corpus.h5ad", dense, n_counts, gene_names(6))
    with caplog.at_level(logging.INFO, logger="workflow_scripts.reference.medians"):
        compute_gene_medians(path, tmp_path / "medians.tsv", tokenizer(8))
    assert "ENSG00000000000" not in read_medians(tmp_path / "medians.tsv")["ensembl_id"].tolist()
    assert "2 of 6 genes" in caplog.text and "never detected" in caplog.text


def test_duplicate_gene_ids_are_refused(tmp_path):
    dense, n_counts = awkward_counts(10, 4, seed=2)
    path = write_counts(tmp_path / "corpus.h5ad", dense, n_counts, ["ENSGA", "ENSGB", "ENSGA", "ENSGC"])
    with pytest.raises(InputError, match="more than once") as caught:
        compute_gene_medians(path, tmp_path / "medians.tsv", tokenizer(4))
    assert str(path) in str(caught.value) and not (tmp_path / "medians.tsv").exists()


def write_medians(path: Path, medians: dict[str, float]) -> Path:
    table = pd.DataFrame({"ensembl_id": list(medians), "median": list(medians.values()), "n_cells_detected": 3})
    table.to_csv(path, sep="\t", index=False)
    return path


def read_reference(tmp_path: Path) -> tuple[dict[str, int], dict[str, float]]:
    tokens = pd.read_csv(tmp_path / "token_dictionary.tsv", sep="\t")
    used = read_medians(tmp_path / "medians_used.tsv")
    assert list(tokens.columns) == ["token", "token_id"] and list(used.columns) == ["ensembl_id", "median"]
    return dict(zip(tokens["token"], tokens["token_id"])), dict(zip(used["ensembl_id"], used["median"]))


def reference_outputs(tmp_path: Path) -> dict[str, Path]:
    return {
        "output_token_dictionary": tmp_path / "token_dictionary.tsv",
        "output_medians": tmp_path / "medians_used.tsv",
    }


def reference(tmp_path: Path, medians: str, token_dictionary: str, computed: Path | None, special_tokens: bool) -> None:
    """build_reference with these settings, writing reference_outputs(tmp_path)."""
    build_reference(ReferenceSettings(medians=medians, token_dictionary=token_dictionary),
                    tokenizer(special_tokens=special_tokens), computed, **reference_outputs(tmp_path))


@pytest.mark.parametrize("special_tokens", [False, True])
def test_corpus_reference(tmp_path, special_tokens):
    computed = {"ENSG00000000009": 1.25, "ENSG00000000002": 0.1 + 0.2, "ENSG00000000005": 7.0}
    medians_tsv = write_medians(tmp_path / "gene_medians.tsv", computed)
    reference(tmp_path, "corpus", "corpus", medians_tsv, special_tokens)
    tokens, used = read_reference(tmp_path)
    specials = ["<pad>", "<mask>"] + (["<cls>", "<eos>"] if special_tokens else [])
    assert list(tokens) == specials + sorted(computed)
    assert list(tokens.values()) == list(range(len(tokens)))
    assert used == computed  # exact round trip of the floats


def test_geneformer_v1_reference(tmp_path):
    reference(tmp_path, "geneformer_v1", "geneformer_v1", None, False)
    tokens, used = read_reference(tmp_path)
    assert tokens == load_token_dictionary("geneformer_v1_tokens") and len(tokens) == 25_426
    assert used == load_median_dictionary("geneformer_v1_medians") and len(used) == 25_424


def test_corpus_medians_with_v1_tokens_keep_v1_ids(tmp_path):
    v1_tokens = load_token_dictionary("geneformer_v1_tokens")
    genes = list(v1_tokens)[100:160]
    medians_tsv = write_medians(tmp_path / "gene_medians.tsv", {gene: 2.0 for gene in genes})
    reference(tmp_path, "corpus", "geneformer_v1", medians_tsv, False)
    tokens, used = read_reference(tmp_path)
    assert tokens == v1_tokens
    assert list(used) == genes


def test_token_dictionary_path_and_v1_medians(tmp_path):
    v1_medians = load_median_dictionary("geneformer_v1_medians")
    genes = sorted(v1_medians)[:30]
    path = tmp_path / "my_tokens.tsv"
    pd.DataFrame({"token": ["<pad>", "<mask>", "<cls>", "<eos>"] + genes, "token_id": range(34)}).to_csv(
        path, sep="\t", index=False
    )
    reference(tmp_path, "geneformer_v1", str(path), None, True)
    tokens, used = read_reference(tmp_path)
    assert tokens["<cls>"] == 2 and tokens[genes[0]] == 4
    assert used == {gene: v1_medians[gene] for gene in genes}


def test_special_tokens_need_cls_and_eos(tmp_path):
    with pytest.raises(InputError, match="<cls> and <eos>"):
        reference(tmp_path, "geneformer_v1", "geneformer_v1", None, True)
    assert not (tmp_path / "token_dictionary.tsv").exists()


def test_dictionaries_sharing_few_genes_are_refused(tmp_path):
    """E.g. a V2-style token dictionary with V1 medians: report the overlap and write nothing."""
    path = tmp_path / "other_tokens.tsv"
    genes = [f"ENSG9{i:010d}" for i in range(40)] + sorted(load_median_dictionary("geneformer_v1_medians"))[:5]
    pd.DataFrame({"token": ["<pad>", "<mask>"] + genes, "token_id": range(47)}).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="share only 5 genes") as caught:
        reference(tmp_path, "geneformer_v1", str(path), None, False)
    assert "V1 with V1" in str(caught.value)
    assert not (tmp_path / "token_dictionary.tsv").exists() and not (tmp_path / "medians_used.tsv").exists()


def test_corpus_needs_computed_medians(tmp_path):
    with pytest.raises(InputError, match="reference.token_dictionary"):
        reference(tmp_path, "geneformer_v1", "corpus", None, False)
