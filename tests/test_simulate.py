"""The seeded simulator: file contract, determinism, planted biology and refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from workflow_scripts import simulate
from workflow_scripts.config import load_config
from workflow_scripts.dictionaries import SPECIAL_TOKENS, load_token_dictionary
from workflow_scripts.errors import InputError

SMALL = {
    "n_genes": 2000,  # the default: sparsity is checked at the realistic gene count
    "n_programs": 20,
    "corpus": {"n_cells": 300},
    "pancreas": {"n_cells": 600, "n_donors": 3, "n_technologies": 2},
}
SEED = 5
RARE_TYPES = ("epsilon", "schwann", "t_cell", "mast")
COMMON_TYPES = ("alpha", "beta", "ductal", "acinar")


@pytest.fixture(scope="module")
def simulation() -> dict:
    """The small settings with every other key filled from config/schema.yaml defaults."""
    return load_config(overrides={"simulation": SMALL})["simulation"]


@pytest.fixture(scope="module", autouse=True)
def small_chunks():
    """Small row chunks, so that even the small datasets are assembled from several chunks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simulate, "CHUNK_CELLS", 128)
        yield


def _write(directory: Path, name: str, simulation: dict, seed: int) -> tuple[ad.AnnData, dict]:
    h5ad, truth = directory / f"{name}.h5ad", directory / f"{name}.truth.json"
    simulate.simulate_dataset(name, simulation, seed, h5ad, truth)
    return ad.read_h5ad(h5ad), json.loads(truth.read_text())


@pytest.fixture(scope="module")
def written(tmp_path_factory, simulation) -> dict[str, tuple[ad.AnnData, dict]]:
    directory = tmp_path_factory.mktemp("simulated")
    return {name: _write(directory, name, simulation, SEED) for name in ("corpus", "pancreas")}


def _same_matrix(left: sp.csr_matrix, right: sp.csr_matrix) -> bool:
    return all(np.array_equal(getattr(left, part), getattr(right, part)) for part in ("data", "indices", "indptr"))


@pytest.mark.parametrize("name", ["corpus", "pancreas"])
def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path, simulation, written, name):
    first, first_truth = written[name]
    again, again_truth = _write(tmp_path / "again", name, simulation, SEED)
    assert _same_matrix(first.X, again.X)
    assert first.obs.equals(again.obs) and first.var.equals(again.var)
    assert first_truth == again_truth
    other, _ = _write(tmp_path / "other", name, simulation, SEED + 1)
    assert not _same_matrix(first.X, other.X)
    assert not np.array_equal(first.var_names, other.var_names)


@pytest.mark.parametrize("name", ["corpus", "pancreas"])
def test_written_file_follows_the_contract(written, simulation, name):
    adata, _ = written[name]
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.int32
    assert adata.shape == (simulation[name]["n_cells"], simulation["n_genes"])
    assert adata.X.data.min() > 0  # stored entries are the non-zero counts
    row_sums = np.asarray(adata.X.sum(axis=1)).ravel()
    assert np.issubdtype(adata.obs["n_counts"].dtype, np.integer)
    np.testing.assert_array_equal(adata.obs["n_counts"].to_numpy(), row_sums)
    assert row_sums.min() > 0
    vocabulary = set(load_token_dictionary("geneformer_v1_tokens")) - set(SPECIAL_TOKENS)
    assert adata.var_names.is_unique and set(adata.var_names) <= vocabulary
    assert list(adata.var["ensembl_id"]) == list(adata.var_names)
    assert adata.obs_names.is_unique and adata.obs_names[0] == f"{name}_00000"


@pytest.mark.parametrize("name", ["corpus", "pancreas"])
def test_counts_are_sparse_and_long_tailed(written, name):
    adata, _ = written[name]
    assert adata.X.nnz / np.prod(adata.shape) < 0.5
    detected = np.diff(adata.X.indptr)
    assert detected.min() >= 50 and 300 <= np.median(detected) <= 1500
    gene_totals = np.sort(np.asarray(adata.X.sum(axis=0)).ravel())[::-1]
    top_share = gene_totals[: adata.n_vars // 100].sum() / gene_totals.sum()
    assert top_share > 0.05  # the top 1% of genes hold far more than 1% of the counts


def test_pancreas_has_every_cell_type_at_realistic_proportions(written, simulation):
    adata, truth = written["pancreas"]
    counts = adata.obs["cell_type"].value_counts()
    assert set(counts.index) == set(simulate.PANCREAS_REFERENCE_COUNTS)
    assert counts.min() >= simulation["pancreas"]["min_cells_per_type"]
    assert min(counts[common] for common in COMMON_TYPES) > max(counts[rare] for rare in RARE_TYPES)
    assert {name: entry["n_cells"] for name, entry in truth["cell_types"].items()} == counts.to_dict()
    assert adata.obs["donor"].nunique() == simulation["pancreas"]["n_donors"]
    assert sorted(adata.obs["batch"].unique()) == ["tech_a", "tech_b"]


def _log_normalized(adata: ad.AnnData) -> np.ndarray:
    counts = adata.X.toarray()
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)


def test_planted_markers_mark_their_cell_type(written):
    adata, truth = written["pancreas"]
    expression = _log_normalized(adata)
    gene_column = {gene: column for column, gene in enumerate(adata.var_names)}
    for cell_type, entry in truth["cell_types"].items():
        markers = [gene_column[gene] for gene in entry["marker_genes"]]
        assert markers, cell_type
        in_type = (adata.obs["cell_type"] == cell_type).to_numpy()
        marker_score = expression[:, markers].mean(axis=1)
        assert marker_score[in_type].mean() > marker_score[~in_type].mean(), cell_type


def test_related_cell_types_share_a_lineage_program(written):
    _, truth = written["pancreas"]
    for lineage, members in simulate.PANCREAS_LINEAGES.items():
        lineage_program = truth["program_of_role"][lineage]
        for member in members:
            activities = truth["cell_types"][member]["program_activity"]
            assert activities[lineage_program] > activities[truth["program_of_role"][member]]


def test_corpus_cells_express_their_dominant_program(written):
    adata, truth = written["corpus"]
    expression = _log_normalized(adata)
    gene_column = {gene: column for column, gene in enumerate(adata.var_names)}
    program = adata.obs["program"].value_counts().index[0]
    planted = truth["world"]["programs"][program]
    genes = [gene_column[gene] for gene, fold in zip(planted["genes"], planted["log_fold_changes"]) if fold > 0]
    in_program = (adata.obs["program"] == program).to_numpy()
    score = expression[:, genes].mean(axis=1)
    assert score[in_program].mean() > score[~in_program].mean() + 0.2
    assert adata.obs["donor"].nunique() > 1


def test_truth_file_describes_the_world(written, simulation):
    adata, truth = written["pancreas"]
    world = truth["world"]
    assert truth["dataset"] == "pancreas" and truth["seed"] == SEED
    assert len(world["programs"]) == simulation["n_programs"]
    planted = {gene for program in world["programs"].values() for gene in program["genes"]}
    planted |= set(world["housekeeping_genes"])
    assert planted <= set(adata.var_names)
    assert all(0 < program["strength"] < 1 for program in world["programs"].values())
    corpus_truth = written["corpus"][1]
    assert corpus_truth["world"] == world  # every dataset is drawn from the same world


def test_cell_type_allocation_keeps_the_floor_and_the_order():
    counts = simulate.allocate_cell_type_counts(2500, 10)
    assert sum(counts.values()) == 2500
    assert min(counts.values()) == 10 and counts["t_cell"] == 10
    assert counts["alpha"] > counts["beta"] > counts["ductal"] > counts["acinar"] > counts["delta"]
    with pytest.raises(InputError, match="min_cells_per_type"):
        simulate.allocate_cell_type_counts(100, 10)


def test_bad_input_is_refused_before_any_output(tmp_path, simulation):
    h5ad, truth = tmp_path / "x.h5ad", tmp_path / "x.truth.json"
    with pytest.raises(InputError, match="no simulator"):
        simulate.simulate_dataset("lung", simulation, SEED, h5ad, truth)
    too_few_programs = {**simulation, "n_programs": 10}
    with pytest.raises(InputError, match="n_programs"):
        simulate.simulate_dataset("pancreas", too_few_programs, SEED, h5ad, truth)
    with pytest.raises(InputError, match="n_genes"):
        simulate.build_world(SEED, 10**6, 20)
    assert not list(tmp_path.iterdir())
