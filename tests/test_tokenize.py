"""Rank-value tokenizer against a per-cell reference (Geneformer's loop), its output contract and refusals."""

from __future__ import annotations

from pathlib import Path

import anndata
import datasets
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workflow_scripts.core.dictionaries import (
    BUILTIN,
    builtin_path,
    load_median_dictionary,
    load_token_dictionary,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.tokenization import tokenizer as tokenize_module
from workflow_scripts.tokenization.tokenizer import (
    ordered_map,
    ranked_tokens,
    tokenize_dataset,
)


def write_counts(path: Path, dense: np.ndarray, gene_ids: list[str], obs: pd.DataFrame | None = None) -> Path:
    frame = pd.DataFrame(index=[f"cell{i}" for i in range(dense.shape[0])]) if obs is None else obs.copy()
    frame["n_counts"] = dense.sum(axis=1).astype(np.float64) + 3  # the file's n_counts, not recomputed
    matrix = sp.csr_matrix(dense.astype(np.int32))
    anndata.AnnData(X=matrix, obs=frame, var=pd.DataFrame(index=gene_ids)).write_h5ad(path)
    return path


def write_dictionaries(tmp_path: Path, tokens: dict[str, int], medians: dict[str, float]) -> tuple[Path, Path]:
    token_tsv, medians_tsv = tmp_path / "token_dictionary.tsv", tmp_path / "medians_used.tsv"
    pd.DataFrame({"token": list(tokens), "token_id": list(tokens.values())}).to_csv(token_tsv, sep="\t", index=False)
    medians_table = pd.DataFrame({"ensembl_id": list(medians), "median": list(medians.values())})
    medians_table.to_csv(medians_tsv, sep="\t", index=False)
    return token_tsv, medians_tsv


def reference_tokenize(
    dense: np.ndarray, n_counts: np.ndarray, gene_ids: list[str], tokens: dict[str, int], medians: dict[str, float],
    model_input_size: int, special_tokens: bool,
) -> list[list[int]]:
    """Geneformer's tokenizer, one cell at a time, with ties ordered by ascending token id."""
    in_vocabulary = [j for j, gene in enumerate(gene_ids) if gene in tokens and gene in medians]
    cells = []
    for i in range(dense.shape[0]):
        genes = [j for j in in_vocabulary if dense[i, j] > 0]
        values = [dense[i, j] / n_counts[i] * 10_000 / medians[gene_ids[j]] for j in genes]
        ranked = sorted(zip(values, [tokens[gene_ids[j]] for j in genes]), key=lambda pair: (-pair[0], pair[1]))
        ids = [token for _, token in ranked]
        if special_tokens:
            cells.append([tokens["<cls>"]] + ids[: model_input_size - 2] + [tokens["<eos>"]])
        else:
            cells.append(ids[:model_input_size])
    return cells


def tied_dataset(n_cells: int = 57, n_genes: int = 40, seed: int = 0):
    """Small counts and few distinct medians, so many genes in a cell share a value (ties)."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 4, size=(n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < 0.5)
    gene_ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    dense[:, 0] = 1  # every cell has a vocabulary gene
    token_ids = rng.permutation(np.arange(4, n_genes + 1))  # token order differs from column order
    tokens = {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3}
    tokens.update({gene: int(token) for gene, token in zip(gene_ids[:-3], token_ids)})  # last 3 genes: no token
    medians = {gene: float(rng.choice([0.5, 1.0, 2.0])) for gene in gene_ids[:-6]}  # 3 tokens without a median
    return dense, gene_ids, tokens, medians


def settings(model_input_size: int = 2048, special_tokens: bool = False, chunk_size: int = 5) -> TokenizerSettings:
    return TokenizerSettings(model_input_size=model_input_size, special_tokens=special_tokens, chunk_size=chunk_size)


def checks(min_genes_in_vocabulary: int = 1) -> ChecksSettings:
    return ChecksSettings(min_genes_in_vocabulary=min_genes_in_vocabulary, min_genes_per_class=2, min_count_share_in_vocabulary=0.5)


def tokenize(tmp_path: Path, h5ad: Path, tokens, medians, obs_columns: tuple[str, ...] = (), threads: int = 1,
             min_genes_in_vocabulary: int = 1, **tokenizer) -> datasets.Dataset:
    """tokenize_dataset with `tokenizer` keys changed from settings()'s."""
    token_tsv, medians_tsv = write_dictionaries(tmp_path, tokens, medians)
    tokenize_dataset(h5ad, token_tsv, medians_tsv, tmp_path / "cells.dataset", settings(**tokenizer),
                     checks(min_genes_in_vocabulary), list(obs_columns), threads)
    return datasets.load_from_disk(str(tmp_path / "cells.dataset"))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("special_tokens", [False, True])
@pytest.mark.parametrize(("model_input_size", "chunk_size"), [(12, 1), (12, 13), (2048, 8), (9, 1000)])
def test_matches_per_cell_reference(tmp_path, special_tokens, model_input_size, chunk_size, threads):
    dense, gene_ids, tokens, medians = tied_dataset()
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids)
    dataset = tokenize(tmp_path, h5ad, tokens, medians, model_input_size=model_input_size,
                       special_tokens=special_tokens, chunk_size=chunk_size, threads=threads)
    n_counts = dense.sum(axis=1) + 3.0
    expected = reference_tokenize(dense, n_counts, gene_ids, tokens, medians, model_input_size, special_tokens)
    assert dataset["input_ids"] == expected
    assert dataset["length"] == [len(ids) for ids in expected]
    assert dataset["cell_id"] == [f"cell{i}" for i in range(dense.shape[0])]
    if model_input_size < 2048:
        assert max(dataset["length"]) == model_input_size  # some cells were truncated


@pytest.mark.parametrize("threads", [1, 3])
def test_ordered_map_keeps_order_and_takes_a_bounded_number_of_items_ahead(threads):
    taken = []

    def items():
        for item in range(20):
            taken.append(item)
            yield item

    results = []
    for index, result in enumerate(ordered_map(lambda item: item * item, items(), threads)):
        assert len(taken) <= index + 1 + (threads if threads > 1 else 0)  # a stream, not the whole file at once
        results.append(result)
    assert results == [item * item for item in range(20)]


def test_reference_data_has_ties_that_the_rule_orders():
    """The random data must exercise tie-breaking, or the comparison above proves little."""
    dense, gene_ids, tokens, medians = tied_dataset()
    values = dense[:, :-6] / (dense.sum(axis=1, keepdims=True) + 3.0) * 10_000 / np.array(list(medians.values()))
    tied_cells = [len(np.unique(row[row > 0])) < (row > 0).sum() for row in values]
    assert sum(tied_cells) > len(tied_cells) // 2


@pytest.mark.parametrize("sort_run_entries", [1, 1000, 10**9])  # a run per cell, runs of whole cells, one run
@pytest.mark.parametrize("count_scale", [1, 2**23])
def test_rank_order_is_exact_for_values_that_differ_only_in_their_last_bits(monkeypatch, count_scale,
                                                                            sort_run_entries):
    """The sort key keeps only a value's leading bits: values a few ulps apart (and exact ties) must
    still come out ordered by value, then token id, however the keys are cut into runs of cells to sort.
    Counts too large to recover from those bits (here above 2**23, with 24 mantissa bits kept) send the
    chunk to the plain lexsort, with the same result."""
    monkeypatch.setattr(tokenize_module, "SORT_RUN_ENTRIES", sort_run_entries)
    rng = np.random.default_rng(3)
    n_cells, n_genes = 5000, 30  # 13 bits for the cell, 15 for the tokens: 36 of a value's 63 bits are kept
    rows, genes = np.nonzero(rng.random((n_cells, n_genes)) < 0.4)
    counts = rng.integers(1, 4, rows.size).astype(np.int32) * count_scale
    n_counts = rng.integers(1_000, 5_000, n_cells) + 0.5
    gene_median = rng.choice([0.7, 1.3, 2.9], n_genes) * (1 + rng.integers(0, 8, n_genes) * np.finfo(float).eps)
    gene_token = np.r_[rng.permutation(n_genes - 1) + 4, 25_425]
    values = counts / n_counts[rows] * 10_000 / gene_median[genes]
    expected = gene_token[genes][np.lexsort((gene_token[genes], -values, rows))]
    ranked = ranked_tokens(np.bincount(rows, minlength=n_cells), genes, counts, n_counts, gene_token, gene_median)
    assert ranked.dtype == np.int32 and np.array_equal(ranked, expected)
    order = np.lexsort((values, rows))
    same_cell = rows[order][1:] == rows[order][:-1]
    gaps = (np.diff(values[order]) / values[order][1:])[same_cell]
    assert (gaps == 0).sum() > 5_000 and ((gaps > 0) & (gaps < 1e-14)).sum() > 10_000  # exact ties and near-ties


def test_geneformer_v1_dictionaries(tmp_path):
    """Real V1 vocabulary and medians (the shipped TSVs), on cells whose genes are real Ensembl IDs."""
    tokens = load_token_dictionary("geneformer_v1_tokens")
    medians = load_median_dictionary("geneformer_v1_medians")
    rng = np.random.default_rng(7)
    genes = list(rng.choice(sorted(medians), size=150, replace=False)) + ["ENSG_NOT_IN_V1"]
    dense = rng.poisson(0.8, size=(30, len(genes))) * (rng.random((30, len(genes))) < 0.5)
    dense[:, 0] += 1
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, genes)
    tokenize_dataset(
        h5ad, builtin_path(BUILTIN["geneformer_v1_tokens"]), builtin_path(BUILTIN["geneformer_v1_medians"]),
        tmp_path / "v1.dataset", settings(model_input_size=64, chunk_size=7), checks(100), obs_columns=[],
    )
    dataset = datasets.load_from_disk(str(tmp_path / "v1.dataset"))
    expected = reference_tokenize(dense, dense.sum(axis=1) + 3.0, genes, tokens, medians, 64, False)
    assert dataset["input_ids"] == expected
    assert max(max(ids) for ids in dataset["input_ids"]) < 25_426


def test_output_columns_and_types(tmp_path):
    dense, gene_ids, tokens, medians = tied_dataset(n_cells=12)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(["alpha", "beta", "delta"] * 4), "donor": np.arange(12) % 3},
        index=[f"donor{i % 3}_cell{i}" for i in range(12)],
    )
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids, obs=obs)
    dataset = tokenize(tmp_path, h5ad, tokens, medians, obs_columns=["cell_type", "donor"])
    assert dataset.column_names == ["input_ids", "length", "cell_id", "cell_type", "donor"]
    features = dataset.features
    assert features["input_ids"].feature.dtype == "int32" and features["length"].dtype == "int32"
    assert all(features[name].dtype == "string" for name in ["cell_id", "cell_type", "donor"])
    assert dataset["cell_id"] == obs.index.tolist()
    assert dataset["cell_type"] == obs["cell_type"].astype(str).tolist()
    assert dataset["donor"] == ["0", "1", "2"] * 4


def test_rewrites_an_existing_output(tmp_path):
    dense, gene_ids, tokens, medians = tied_dataset(n_cells=6)
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids)
    (tmp_path / "cells.dataset").mkdir()
    (tmp_path / "cells.dataset" / "stale.txt").write_text("old")
    dataset = tokenize(tmp_path, h5ad, tokens, medians)
    assert dataset.num_rows == 6 and not (tmp_path / "cells.dataset" / "stale.txt").exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_refuses_too_few_vocabulary_genes(tmp_path):
    dense, gene_ids, tokens, medians = tied_dataset()
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids)
    with pytest.raises(InputError, match="only 34 of 40 genes") as caught:
        tokenize(tmp_path, h5ad, tokens, medians, min_genes_in_vocabulary=35)
    assert str(h5ad) in str(caught.value)
    assert not (tmp_path / "cells.dataset").exists()


def test_refuses_cells_without_tokens(tmp_path):
    dense, gene_ids, tokens, medians = tied_dataset(n_cells=10)
    dense[[2, 7], :] = 0
    dense[[2, 7], -1] = 5  # counts only in a gene without a token
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids)
    with pytest.raises(InputError, match="2 of 10 cells") as caught:
        tokenize(tmp_path, h5ad, tokens, medians, chunk_size=3)
    assert "filter cells" in str(caught.value)
    assert list(tmp_path.glob("cells.dataset*")) == [] and list(tmp_path.glob(".cells.dataset*")) == []


def test_refuses_missing_obs_column(tmp_path):
    dense, gene_ids, tokens, medians = tied_dataset(n_cells=4)
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids)
    with pytest.raises(InputError, match="no column 'cell_type'") as caught:
        tokenize(tmp_path, h5ad, tokens, medians, obs_columns=["cell_type"])
    assert str(h5ad) in str(caught.value)


def test_v2_mode_needs_cls_and_eos(tmp_path):
    dense, gene_ids, tokens, medians = tied_dataset(n_cells=4)
    del tokens["<cls>"]
    h5ad = write_counts(tmp_path / "cells.h5ad", dense, gene_ids)
    with pytest.raises(InputError, match="<cls> and <eos>"):
        tokenize(tmp_path, h5ad, tokens, medians, special_tokens=True)
