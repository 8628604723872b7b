"""The seeded simulator: file contract, determinism, planted biology and refusals of bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import DEFAULT_CONFIG_PATH
from scipy.stats import spearmanr

from workflow_scripts.core import truths
from workflow_scripts.core.config import load_config, load_schema
from workflow_scripts.core.dictionaries import SPECIAL_TOKENS, load_token_dictionary
from workflow_scripts.core.errors import InputError
from workflow_scripts.simulate import cells, simulator
from workflow_scripts.simulate.datasets import (
    DATASET_BUILDERS,
    cardiomyocytes,
    corpus,
    differentiation,
    endothelial,
    pancreas,
    sciplex2,
    stem_cells,
)
from workflow_scripts.simulate.settings import SimulationSettings
from workflow_scripts.simulate.world import (
    HUB_PROGRAM_RANGE,
    build_world,
    vocabulary_genes,
    world_from_settings,
)

SMALL = {
    "n_genes": 2000,  # the default: sparsity is checked at the realistic gene count
    "n_programs": 20,
    "corpus": {"n_cells": 300},
    "pancreas": {"n_cells": 600, "n_donors": 3, "n_technologies": 2},
    "sciplex2": {"n_cells": 360, "n_replicates": 2},
    "cardiomyocytes": {"n_cells": 400},
    "endothelial": {"n_cells": 300},
    "stem_cells": {"n_cells": 300},
    "differentiation": {"n_cells": 300},
}
SEED = 5
DATASETS = ("corpus", "pancreas", "sciplex2", "cardiomyocytes", "endothelial", "stem_cells", "differentiation")
RARE_TYPES = ("epsilon", "schwann", "t_cell", "mast")
COMMON_TYPES = ("alpha", "beta", "ductal", "acinar")


@pytest.fixture(scope="module")
def simulation() -> SimulationSettings:
    """The small settings with every other key filled from the schema's defaults."""
    return SimulationSettings.from_config(load_config(DEFAULT_CONFIG_PATH, overrides={"simulation": SMALL})["simulation"])


def _with(settings: SimulationSettings, section: str | None = None, **changes) -> SimulationSettings:
    """The settings with some keys of the top level (section None) or of one dataset's section changed."""
    if section is None:
        return dataclasses.replace(settings, **changes)
    return dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section), **changes)})


@pytest.fixture(scope="module", autouse=True)
def small_chunks():
    """Small row chunks, so that even the small datasets are assembled from several chunks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cells, "CHUNK_CELLS", 128)
        yield


def _write(directory: Path, name: str, simulation: SimulationSettings, seed: int) -> tuple[ad.AnnData, dict]:
    h5ad, truth = directory / f"{name}.h5ad", directory / f"{name}.truth.json"
    simulator.simulate_dataset(name, simulation, seed, h5ad, truth)
    return ad.read_h5ad(h5ad), json.loads(truth.read_text())


@pytest.fixture(scope="module")
def written(tmp_path_factory, simulation) -> dict[str, tuple[ad.AnnData, dict]]:
    directory = tmp_path_factory.mktemp("simulated")
    return {name: _write(directory, name, simulation, SEED) for name in DATASETS}


def _same_matrix(left: sp.csr_matrix, right: sp.csr_matrix) -> bool:
    return all(np.array_equal(getattr(left, part), getattr(right, part)) for part in ("data", "indices", "indptr"))


@pytest.mark.parametrize("name", DATASETS)
def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path, simulation, written, name):
    first, first_truth = written[name]
    again, again_truth = _write(tmp_path / "again", name, simulation, SEED)
    assert _same_matrix(first.X, again.X)
    assert first.obs.equals(again.obs) and first.var.equals(again.var)
    assert first_truth == again_truth
    other, _ = _write(tmp_path / "other", name, simulation, SEED + 1)
    assert not _same_matrix(first.X, other.X)
    assert not np.array_equal(first.var_names, other.var_names)


@pytest.mark.parametrize("name", DATASETS)
def test_written_file_follows_the_contract(written, simulation, name):
    adata, _ = written[name]
    assert isinstance(adata.X, sp.csr_matrix) and adata.X.dtype == np.int32
    assert adata.shape == (getattr(simulation, name).n_cells, simulation.n_genes)
    assert adata.X.data.min() > 0  # stored entries are the non-zero counts
    row_sums = np.asarray(adata.X.sum(axis=1)).ravel()
    assert np.issubdtype(adata.obs["n_counts"].dtype, np.integer)
    np.testing.assert_array_equal(adata.obs["n_counts"].to_numpy(), row_sums)
    assert row_sums.min() > 0
    vocabulary = set(load_token_dictionary("geneformer_v1_tokens")) - set(SPECIAL_TOKENS)
    assert adata.var_names.is_unique and set(adata.var_names) <= vocabulary
    assert list(adata.var["ensembl_id"]) == list(adata.var_names)
    assert adata.obs_names.is_unique and adata.obs_names[0] == f"{name}_00000"


@pytest.mark.parametrize("name", DATASETS)
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
    assert set(counts.index) == set(pancreas.REFERENCE_COUNTS)
    assert counts.min() >= simulation.pancreas.min_cells_per_type
    assert min(counts[common] for common in COMMON_TYPES) > max(counts[rare] for rare in RARE_TYPES)
    assert {name: entry["n_cells"] for name, entry in truth["cell_types"].items()} == counts.to_dict()
    assert adata.obs["donor"].nunique() == simulation.pancreas.n_donors
    assert sorted(adata.obs["batch"].unique()) == ["tech_a", "tech_b"]


def _log_normalized(adata: ad.AnnData) -> np.ndarray:
    counts = adata.X.toarray()
    return np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)


def test_planted_markers_mark_their_cell_type(written):
    adata, truth = written["pancreas"]
    expression = _log_normalized(adata)
    gene_column = {gene: column for column, gene in enumerate(adata.var_names)}
    for cell_type, genes in truths.MARKER_GENES.read(truth).items():
        markers = [gene_column[gene] for gene in genes]
        assert markers, cell_type
        in_type = (adata.obs["cell_type"] == cell_type).to_numpy()
        marker_score = expression[:, markers].mean(axis=1)
        assert marker_score[in_type].mean() > marker_score[~in_type].mean(), cell_type


def test_related_cell_types_share_a_lineage_program(written):
    _, truth = written["pancreas"]
    for lineage, members in pancreas.LINEAGES.items():
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
    assert len(world["programs"]) == simulation.n_programs
    planted = {gene for program in world["programs"].values() for gene in program["genes"]}
    planted |= set(world["housekeeping_genes"])
    assert planted <= set(adata.var_names)
    assert all(0 < program["strength"] < 1 for program in world["programs"].values())
    corpus_truth = written["corpus"][1]
    assert corpus_truth["world"] == world  # every dataset is drawn from the same world


def test_cell_type_allocation_keeps_the_floor_and_the_order():
    counts = pancreas.allocate_cell_type_counts(2500, 10)
    assert sum(counts.values()) == 2500
    assert min(counts.values()) == 10 and counts["t_cell"] == 10
    assert counts["alpha"] > counts["beta"] > counts["ductal"] > counts["acinar"] > counts["delta"]
    with pytest.raises(InputError, match="min_cells_per_type"):
        pancreas.allocate_cell_type_counts(100, 10)


def test_bad_input_is_refused_before_any_output(tmp_path, simulation):
    h5ad, truth = tmp_path / "x.h5ad", tmp_path / "x.truth.json"
    with pytest.raises(InputError, match="no simulator"):
        simulator.simulate_dataset("lung", simulation, SEED, h5ad, truth)
    assert not list(tmp_path.iterdir())


def test_the_schema_keeps_the_world_within_what_the_datasets_need():
    """The builders do not re-check n_genes and n_programs: the schema's bounds must cover them."""
    world_schema = load_schema()["properties"]["simulation"]["properties"]
    assert world_schema["n_genes"]["maximum"] == len(vocabulary_genes())
    roles = (pancreas.PROGRAM_ROLES, sciplex2.PROGRAM_ROLES, cardiomyocytes.PROGRAM_ROLES, endothelial.PROGRAM_ROLES,
             stem_cells.PROGRAM_ROLES, differentiation.PROGRAM_ROLES)
    assert world_schema["n_programs"]["minimum"] >= max(len(dataset_roles) for dataset_roles in roles)


def _gene_columns(adata: ad.AnnData, genes: list[str]) -> list[int]:
    return list(adata.var_names.get_indexer(genes))


def test_new_datasets_leave_the_existing_ones_unchanged(tmp_path, simulation):
    """Settings of other datasets never reach the world, the existing datasets or the dosage label
    file: each builder has its own random stream, and the gene classes are planted on theirs."""
    world = world_from_settings(simulation, SEED)
    other_settings = _with(_with(simulation, "sciplex2", n_cells=999, doses=[0, 3]), "cardiomyocytes", n_cells=777)
    first = corpus.simulate_corpus(world, simulation, SEED).adata
    again = corpus.simulate_corpus(world, other_settings, SEED).adata
    assert _same_matrix(first.X, again.X)
    gene_class_settings = simulation
    for section in ("endothelial", "stem_cells", "differentiation"):
        gene_class_settings = _with(gene_class_settings, section, n_cells=123, n_per_class=7)
    other_world = world_from_settings(gene_class_settings, SEED)
    assert other_world.truth() == world.truth() and np.array_equal(other_world.dispersion, world.dispersion)
    for name in ("corpus", "pancreas", "sciplex2", "cardiomyocytes"):
        first, again = (DATASET_BUILDERS[name](world, settings, SEED) for settings in (simulation, gene_class_settings))
        assert _same_matrix(first.adata.X, again.adata.X) and first.truth == again.truth, name
    simulator.write_gene_labels("dosage", simulation, SEED, tmp_path / "first.tsv")
    simulator.write_gene_labels("dosage", gene_class_settings, SEED, tmp_path / "again.tsv")
    assert (tmp_path / "first.tsv").read_bytes() == (tmp_path / "again.tsv").read_bytes()


def test_corpus_can_carry_the_cardiomyocytes_planted_regulation(simulation):
    """With cardiac_fraction, corpus cells where the cardiomyocytes' driver is high express its
    targets (the failing-heart program) and the pair's co-bound targets more: links pretraining can
    learn. With a fraction of 0 the corpus holds no such link."""
    settings = _with(simulation, "corpus", n_cells=800, cardiac_fraction=0.5)
    unplanted = _with(settings, "corpus", cardiac_fraction=0.0)
    world = world_from_settings(settings, SEED)
    truth = cardiomyocytes.simulate_cardiomyocytes(world, settings, SEED).truth
    gaps = {}
    for fraction, corpus_settings in (("planted", settings), ("none", unplanted)):
        corpus_cells = corpus.simulate_corpus(world, corpus_settings, SEED).adata
        expression = _log_normalized(corpus_cells)
        driver = expression[:, corpus_cells.var_names.get_loc(truths.DRIVER_GENE.read(truth))]
        targets = expression[:, _gene_columns(corpus_cells, truths.DRIVER_TARGETS.read(truth))].mean(axis=1)
        pair = expression[:, _gene_columns(corpus_cells, truths.PAIR_GENES.read(truth))]
        pair_targets = expression[:, _gene_columns(corpus_cells, truths.PAIR_TARGETS.read(truth))].mean(axis=1)
        both_on = (pair > np.quantile(pair, 0.8, axis=0)).all(axis=1)
        gaps[fraction] = (targets[driver > np.quantile(driver, 0.85)].mean() - targets[driver <= np.median(driver)].mean(),
                          pair_targets[both_on].mean() - pair_targets[~both_on].mean())
    assert gaps["planted"][0] > 0.15 and gaps["planted"][0] > 3 * abs(gaps["none"][0]), gaps
    assert gaps["planted"][1] > 0.6 and gaps["planted"][1] > 3 * abs(gaps["none"][1]), gaps


def test_world_without_dosage_genes_is_the_world_drawn_before_them():
    planted = build_world(SEED, 500, 20, 10)
    plain = build_world(SEED, 500, 20)
    assert len(plain.dosage_sensitive) == len(plain.dosage_insensitive) == 0
    assert np.array_equal(planted.gene_ids, plain.gene_ids)
    assert np.array_equal(planted.baseline_log_expression, plain.baseline_log_expression)
    untouched = np.setdiff1d(np.arange(500), np.concatenate([planted.dosage_sensitive, planted.dosage_insensitive]))
    assert np.array_equal(planted.dispersion[untouched], plain.dispersion[untouched])


def test_sciplex2_doses_treatments_and_replicates(written, simulation):
    adata, truth = written["sciplex2"]
    settings = simulation.sciplex2
    labels = ["0", "0.1", "1", "10", "25", "50"]
    assert list(adata.obs["dose"].cat.categories) == labels  # ordered by dose, not as strings
    counts = adata.obs["dose"].value_counts()
    assert counts.sum() == settings.n_cells and counts.max() - counts.min() <= 1
    vehicle = (adata.obs["dose"] == "0").to_numpy()
    assert (adata.obs["treatment"].to_numpy()[vehicle] == "vehicle").all()
    assert (adata.obs["treatment"].to_numpy()[~vehicle] == "nutlin3a").all()
    assert sorted(adata.obs["replicate"].unique()) == ["replicate_1", "replicate_2"]
    assert {label: entry["n_cells"] for label, entry in truth["doses"].items()} == counts.to_dict()
    assert truth["doses"]["0"]["treatment"] == "vehicle" and truth["doses"]["25"]["dose_um"] == 25.0
    responses = [truth["doses"][label]["response_at_median_ec50"] for label in labels]
    assert responses[0] == 0 and np.all(np.diff(responses) > 0) and responses[-1] > 0.9  # saturating


def test_p53_targets_rise_with_dose_and_cell_cycle_genes_fall(written):
    adata, truth = written["sciplex2"]
    expression = _log_normalized(adata)
    dose = adata.obs["dose"].cat.codes.to_numpy()
    target_score = expression[:, _gene_columns(adata, truth["p53_target_genes"])].mean(axis=1)
    assert spearmanr(dose, target_score).statistic > 0.6
    dose_means = np.array([target_score[dose == level].mean() for level in range(dose.max() + 1)])
    assert np.all(np.diff(dose_means) > -0.05)  # non-decreasing up to noise at the near-equal low doses
    assert dose_means[-1] - dose_means[0] > 0.5
    assert np.argmax(np.diff(dose_means)) == 2  # the largest step is 1 -> 10 µM, across the EC50
    cell_cycle_score = expression[:, _gene_columns(adata, truth["cell_cycle_genes"])].mean(axis=1)
    assert cell_cycle_score[dose == dose.max()].mean() < cell_cycle_score[dose == 0].mean() - 0.1


def test_doses_come_from_the_configuration(simulation):
    settings = _with(simulation, "sciplex2", n_cells=100, doses=[2.5, 0, 125], n_replicates=1)
    world = build_world(SEED, 300, 20)
    adata = sciplex2.simulate_sciplex2(world, settings, SEED).adata
    assert list(adata.obs["dose"].cat.categories) == ["0", "2.5", "125"]
    assert adata.obs["dose"].value_counts().to_dict() == {"0": 34, "2.5": 33, "125": 33}


def test_cardiomyocyte_donors_are_nested_in_disease(written, simulation):
    adata, truth = written["cardiomyocytes"]
    assert list(adata.obs["disease"].cat.categories) == ["NF", "HCM", "DCM"]
    diseases_per_donor = adata.obs.groupby("donor", observed=True)["disease"].nunique()
    assert (diseases_per_donor == 1).all()
    donors_per_disease = adata.obs.groupby("disease", observed=True)["donor"].nunique().to_dict()
    assert donors_per_disease == simulation.cardiomyocytes.donors_per_disease
    assert donors_per_disease == {"NF": 9, "HCM": 11, "DCM": 9}  # the schema defaults, as in the paper
    assert adata.obs["donor"].value_counts().min() >= cardiomyocytes.MIN_CELLS_PER_DONOR
    for donor, entry in truth["donors"].items():
        assert (adata.obs.loc[adata.obs["donor"] == donor, "disease"] == entry["disease"]).all()
        assert donor in truth["diseases"][entry["disease"]]["donors"]


def test_truth_records_the_planted_perturbation_targets(written):
    adata, truth = written["cardiomyocytes"]
    driver, pair = truths.DRIVER_GENE.read(truth), truths.PAIR_GENES.read(truth)
    controls, driver_targets = truths.CONTROL_GENES.read(truth), truths.DRIVER_TARGETS.read(truth)
    planted = [driver, *pair, *truths.PAIR_TARGETS.read(truth), *controls]
    assert len(set(planted)) == len(planted) == 3 + cardiomyocytes.N_PAIR_TARGETS + cardiomyocytes.N_CONTROL_GENES
    assert set(planted) <= set(adata.var_names)
    assert truths.DRIVER_PROGRAM.read(truth) == truth["program_of_role"]["failing_heart"]
    driven_program = truth["world"]["programs"][truths.DRIVER_PROGRAM.read(truth)]["genes"]
    assert driver_targets and set(driver_targets) <= set(driven_program)
    assert driver not in driven_program
    pair_entry = truths.COOPERATING_PAIR.read(truth)
    together, alone = pair_entry["target_log_fold_change_together"], pair_entry["target_log_fold_change_each_alone"]
    assert together > 2 * alone  # the joint effect exceeds the sum of the single effects
    disease_programs = {truth["program_of_role"][role] for role in cardiomyocytes.PROGRAM_ROLES}
    disease_genes = {gene for name in disease_programs for gene in truth["world"]["programs"][name]["genes"]}
    assert not disease_genes & set(controls)


def test_driver_follows_disease_and_its_targets(written):
    adata, truth = written["cardiomyocytes"]
    expression = _log_normalized(adata)
    disease = adata.obs["disease"].to_numpy()
    driver = expression[:, adata.var_names.get_loc(truth["driver"]["gene"])]
    assert driver[disease == "HCM"].mean() > driver[disease == "NF"].mean() + 0.5
    assert driver[disease == "DCM"].mean() > driver[disease == "NF"].mean() + 0.5
    target_score = expression[:, _gene_columns(adata, truth["driver"]["target_genes"])].mean(axis=1)
    assert np.corrcoef(driver, target_score)[0, 1] > 0.3
    control_score = expression[:, _gene_columns(adata, truth["control_genes"])].mean(axis=1)
    failing = disease != "NF"
    control_shift = abs(control_score[failing].mean() - control_score[~failing].mean())
    assert control_shift < 0.5 * (target_score[failing].mean() - target_score[~failing].mean())


def test_cooperating_pair_acts_more_than_additively(written):
    adata, truth = written["cardiomyocytes"]
    expression = _log_normalized(adata)
    first, second = (expression[:, adata.var_names.get_loc(gene)] for gene in truth["cooperating_pair"]["genes"])
    # The clearly on and clearly off thirds of each gene (the middle mixes both).
    on_first, off_first = first > np.quantile(first, 0.65), first <= np.quantile(first, 0.35)
    on_second, off_second = second > np.quantile(second, 0.65), second <= np.quantile(second, 0.35)
    score = expression[:, _gene_columns(adata, truth["cooperating_pair"]["target_genes"])].mean(axis=1)
    neither = score[off_first & off_second].mean()
    first_alone = score[on_first & off_second].mean() - neither
    second_alone = score[off_first & on_second].mean() - neither
    together = score[on_first & on_second].mean() - neither
    assert together > 1.5 * (first_alone + second_alone) and together > 0.5


def test_dosage_label_file(tmp_path, written, simulation):
    output = tmp_path / "dosage_genes.tsv"
    simulator.write_gene_labels("dosage", simulation, SEED, output)
    labels = pd.read_csv(output, sep="\t")
    assert list(labels.columns) == ["ensembl_id", "label"]
    n_per_class = simulation.dosage_genes.n_per_class
    class_sizes = labels["label"].value_counts().to_dict()
    assert class_sizes == {"dosage_sensitive": n_per_class, "dosage_insensitive": n_per_class}
    assert labels["ensembl_id"].is_unique and labels["ensembl_id"].is_monotonic_increasing
    for adata, _ in written.values():
        assert set(labels["ensembl_id"]) <= set(adata.var_names)
    world = written["corpus"][1]["world"]
    sensitive = set(labels.loc[labels["label"] == "dosage_sensitive", "ensembl_id"])
    assert sensitive == set(world["dosage_sensitive_genes"])
    assert set(labels["ensembl_id"]) - sensitive == set(world["dosage_insensitive_genes"])


def test_dosage_sensitive_genes_are_tightly_regulated_hubs(simulation):
    world = world_from_settings(simulation, SEED)
    memberships = (world.program_effects() != 0).sum(axis=0)
    assert memberships[world.dosage_sensitive].min() >= HUB_PROGRAM_RANGE[0]
    assert memberships[world.dosage_insensitive].max() <= 1
    sensitive_dispersion = np.median(world.dispersion[world.dosage_sensitive])
    assert sensitive_dispersion * 4 < np.median(world.dispersion[world.dosage_insensitive])
    effects = np.abs(world.program_effects())
    single_effect = effects[:, world.dosage_insensitive].max(axis=0)
    assert np.median(single_effect) < np.median(effects[:, world.dosage_sensitive].max(axis=0))


def _top_rank_fraction(adata: ad.AnnData, top: int = 64) -> np.ndarray:
    """Per gene, the fraction of cells in which it is among the first `top` rank-value tokens
    (count / n_counts scaled by the gene's non-zero median, as Geneformer's tokenizer ranks them)."""
    counts = adata.X.toarray().astype(float)
    normalized = counts / counts.sum(axis=1, keepdims=True) * 1e4
    detected = (normalized > 0).any(axis=0)
    medians = np.ones(adata.n_vars)
    medians[detected] = np.nanmedian(np.where(normalized > 0, normalized, np.nan)[:, detected], axis=0)
    ranked = normalized / medians
    top_genes = np.argpartition(-ranked, top - 1, axis=1)[:, :top]
    top_genes = top_genes[np.take_along_axis(ranked, top_genes, axis=1) > 0]
    return np.bincount(top_genes, minlength=adata.n_vars) / adata.n_obs


def test_dosage_genes_show_in_the_corpus(written):
    adata, truth = written["corpus"]
    expression = _log_normalized(adata)
    columns = {
        label: _gene_columns(adata, truth["world"][f"{label}_genes"])
        for label in ("dosage_sensitive", "dosage_insensitive")
    }
    detected = (adata.X.toarray() > 0).mean(axis=0)
    top_fraction = _top_rank_fraction(adata)
    for genes in columns.values():
        assert np.median(detected[genes]) > 0.25  # both classes are seen in many cells
        assert np.median(top_fraction[genes]) > 2 * np.median(top_fraction)  # and reach the top ranks
    # Sensitive genes follow the cell's program context; insensitive genes do not.
    _, program = np.unique(adata.obs["program"].to_numpy(), return_inverse=True)  # programs with cells
    one_hot = np.eye(program.max() + 1)[program]
    program_means = (one_hot.T @ expression) / one_hot.sum(axis=0)[:, None]
    context_share = {
        label: (one_hot @ program_means[:, genes]).var(axis=0) / expression[:, genes].var(axis=0)
        for label, genes in columns.items()
    }
    assert np.median(context_share["dosage_sensitive"]) > 1.5 * np.median(context_share["dosage_insensitive"])


def test_new_datasets_refuse_bad_settings_before_any_output(tmp_path, simulation):
    h5ad, truth = tmp_path / "x.h5ad", tmp_path / "x.truth.json"
    same_label = _with(simulation, "sciplex2", doses=[0, 1, 1.0000001])
    with pytest.raises(InputError, match="doses"):
        simulator.simulate_dataset("sciplex2", same_label, SEED, h5ad, truth)
    too_few_cells = _with(simulation, "cardiomyocytes", n_cells=100)
    with pytest.raises(InputError, match="cardiomyocytes.n_cells"):
        simulator.simulate_dataset("cardiomyocytes", too_few_cells, SEED, h5ad, truth)
    too_many_dosage_genes = _with(simulation, "dosage_genes", n_per_class=900)
    with pytest.raises(InputError, match="n_per_class"):
        simulator.simulate_dataset("corpus", too_many_dosage_genes, SEED, h5ad, truth)
    no_dosage_genes = _with(simulation, "dosage_genes", n_per_class=0)
    with pytest.raises(InputError, match="n_per_class"):
        simulator.write_gene_labels("dosage", no_dosage_genes, SEED, tmp_path / "labels.tsv")
    with pytest.raises(InputError, match="n_genes"):  # too few genes outside the disease programs
        cardiomyocytes.simulate_cardiomyocytes(build_world(SEED, 100, 20), simulation, SEED)
    assert not list(tmp_path.iterdir())


def test_the_registry_lists_every_truth_a_truth_file_holds(written):
    for name, (_, truth) in written.items():
        registered = truths.truths_of(name)
        assert set(truth) == {entry.key for entry in registered if len(entry.path) == 1}, name
        world_keys = {entry.key for entry in registered if entry.path[0] == truths.WORLD.key and len(entry.path) == 2}
        assert set(truth[truths.WORLD.key]) == world_keys, name
        assert all(entry.held_by(truth) for entry in registered), name
    assert set(DATASET_BUILDERS) == set(written)
    _, cardiac_truth = written["cardiomyocytes"]
    assert not truths.DRIVER.held_by(written["corpus"][1]) and truths.DRIVER.held_by(cardiac_truth)
    assert truths.MARKER_GENES.read(written["pancreas"][1]).keys() == set(pancreas.REFERENCE_COUNTS)


def test_a_new_truth_is_refused_until_registered_then_written(tmp_path, monkeypatch, simulation):
    """A builder writing an entry the registry lacks fails before any output; once registered, the
    entry is in the truth file and the registry lists it for that dataset alone."""
    monkeypatch.setattr(truths, "TRUTHS", dict(truths.TRUTHS))

    def simulate_toy(world, settings, seed):
        cells_of_corpus = corpus.simulate_corpus(world, settings, seed).adata
        return cells.SimulatedDataset(cells_of_corpus, {"toy_genes": world.gene_ids[:3].tolist()})

    monkeypatch.setitem(DATASET_BUILDERS, "toy", simulate_toy)
    h5ad, truth_json = tmp_path / "toy.h5ad", tmp_path / "toy.truth.json"
    with pytest.raises(LookupError, match="toy_genes"):
        simulator.simulate_dataset("toy", simulation, SEED, h5ad, truth_json)
    assert not list(tmp_path.iterdir())
    toy_genes = truths.register("toy_genes", "three genes", "the first three of the world", ("toy",))
    simulator.simulate_dataset("toy", simulation, SEED, h5ad, truth_json)
    written_truth = json.loads(truth_json.read_text())
    assert toy_genes.read(written_truth) == world_from_settings(simulation, SEED).gene_ids[:3].tolist()
    assert toy_genes in truths.truths_of("toy") and toy_genes not in truths.truths_of("corpus")
    with pytest.raises(ValueError, match="declared twice"):
        truths.register("toy_genes", "again", "again")


def test_truths_read_through_the_registry():
    truth = {"driver": {"gene": "D"}, "cell_types": {"alpha": {"marker_genes": ["A"]}, "beta": {"marker_genes": []}}}
    assert truths.DRIVER_GENE.read(truth) == "D"
    assert truths.MARKER_GENES.read(truth) == {"alpha": ["A"], "beta": []}
    assert not truths.PAIR_GENES.held_by(truth) and truths.PAIR_GENES.read(truth, default=[]) == []
    with pytest.raises(KeyError, match="cooperating_pair.genes"):
        truths.PAIR_GENES.read(truth)


def test_a_misspelt_simulation_setting_is_refused_naming_it(tmp_path, capsys, simulation):
    from workflow_scripts.cli import main

    misspelt = simulation.as_dict()
    misspelt["pancreas"]["n_cell"] = misspelt["pancreas"].pop("n_cells")
    code = main(["gene-sets", "--settings", json.dumps(misspelt), "--seed", "1", "--output-gmt",
                 str(tmp_path / "sets.gmt")])
    assert code == 2 and "--settings.pancreas.n_cell" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
