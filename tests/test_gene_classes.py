"""The gene classes planted for the gene classification experiments beyond dosage: each label set's
property is recoverable from the cells by a simple oracle, its genes reach the cells' top ranks, and
its gene label file is written from the dataset's truth file."""

from __future__ import annotations

import dataclasses
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import DEFAULT_CONFIG_PATH
from sklearn.metrics import roc_auc_score

from workflow_scripts.core import truths
from workflow_scripts.core.config import load_config, load_schema
from workflow_scripts.core.errors import InputError
from workflow_scripts.simulate import simulator
from workflow_scripts.simulate.datasets import DATASET_BUILDERS, differentiation
from workflow_scripts.simulate.settings import SimulationSettings
from workflow_scripts.simulate.world import world_from_settings

SEED = 5
NEW_DATASETS = ("endothelial", "stem_cells", "differentiation")
SMALL = {"n_genes": 2000, "corpus": {"n_cells": 300},  # the default gene count: the pools are realistic
         **{name: {"n_cells": 500, "n_per_class": 40} for name in NEW_DATASETS}}
TOP_RANKS = 64  # the default tokenizer.model_input_size
PSEUDOTIME_BINS = 20


@pytest.fixture(scope="module")
def simulation() -> SimulationSettings:
    return SimulationSettings.from_config(load_config(DEFAULT_CONFIG_PATH, overrides={"simulation": SMALL})["simulation"])


@pytest.fixture(scope="module")
def simulated(simulation) -> dict[str, tuple[ad.AnnData, dict]]:
    """Each new dataset's cells and truth entries (with the world), and the corpus whose medians rank genes."""
    world = world_from_settings(simulation, SEED)
    datasets = {}
    for name in (*NEW_DATASETS, "corpus"):
        dataset = DATASET_BUILDERS[name](world, simulation, SEED)
        datasets[name] = dataset.adata, {truths.WORLD.key: world.truth(), **dataset.truth}
    return datasets


def _normalized(adata: ad.AnnData) -> np.ndarray:
    counts = adata.X.toarray().astype(float)
    return counts / counts.sum(axis=1, keepdims=True) * 1e4


def _log_normalized(adata: ad.AnnData) -> np.ndarray:
    return np.log1p(_normalized(adata))


def _columns(adata: ad.AnnData, genes: list[str]) -> np.ndarray:
    return adata.var_names.get_indexer(genes)


def _auc(higher: np.ndarray, lower: np.ndarray) -> float:
    """How often a gene of the first class scores above one of the second (0.5: no difference)."""
    return roc_auc_score(np.r_[np.ones(len(higher)), np.zeros(len(lower))], np.r_[higher, lower])


def _top_rank_fraction(adata: ad.AnnData, reference: ad.AnnData) -> np.ndarray:
    """Per gene, the fraction of cells in which it is among the first TOP_RANKS rank-value tokens,
    normalized counts scaled by the reference's (the corpus's) non-zero medians, as the tokenizer ranks."""
    corpus = _normalized(reference)
    detected = (corpus > 0).any(axis=0)
    medians = np.ones(reference.n_vars)
    medians[detected] = np.nanmedian(np.where(corpus > 0, corpus, np.nan)[:, detected], axis=0)
    ranked = _normalized(adata) / medians
    top_genes = np.argpartition(-ranked, TOP_RANKS - 1, axis=1)[:, :TOP_RANKS]
    top_genes = top_genes[np.take_along_axis(ranked, top_genes, axis=1) > 0]
    return np.bincount(top_genes, minlength=adata.n_vars) / adata.n_obs


def test_central_factors_co_vary_with_several_modules(simulated):
    """A gene's squared correlations with the network modules' scores (its own column left out),
    as a participation ratio: about the number of modules it follows."""
    adata, truth = simulated["endothelial"]
    expression = _log_normalized(adata)
    modules = [_columns(adata, module["genes"]) for module in truths.NETWORK_MODULES.read(truth).values()]

    def modules_followed(gene: int) -> float:
        scores = np.column_stack([expression[:, members[members != gene]].mean(axis=1) for members in modules])
        squared = np.corrcoef(expression[:, gene], scores.T)[0, 1:] ** 2
        return squared.sum() ** 2 / (squared ** 2).sum()

    central, peripheral = ([modules_followed(gene) for gene in _columns(adata, planted.read(truth))]
                           for planted in (truths.CENTRAL_GENES, truths.PERIPHERAL_GENES))
    assert _auc(central, peripheral) > 0.95, (np.median(central), np.median(peripheral))
    assert np.median(central) > 2 * np.median(peripheral)


def test_targets_follow_the_regulator(simulated):
    adata, truth = simulated["endothelial"]
    expression = _log_normalized(adata)
    regulator = expression[:, adata.var_names.get_loc(truths.REGULATOR_GENE.read(truth))]
    target, non_target = (np.corrcoef(regulator, expression[:, _columns(adata, planted.read(truth))].T)[0, 1:]
                          for planted in (truths.REGULATOR_TARGETS, truths.REGULATOR_NON_TARGETS))
    assert _auc(target, non_target) > 0.95 and np.median(target) > 0.2 > abs(np.median(non_target))


def test_bivalent_genes_are_off_but_in_few_states(simulated):
    """Per gene, its lowest state's mean over its highest state's: near 0 for a poised gene, never
    for always-on or active-only genes."""
    adata, truth = simulated["stem_cells"]
    expression = _normalized(adata)
    state = adata.obs["state"].cat.codes.to_numpy()
    state_means = np.stack([expression[state == code].mean(axis=0) for code in range(state.max() + 1)])
    lowest_over_highest = state_means.min(axis=0) / np.maximum(state_means.max(axis=0), 1e-12)
    ratio = {planted.label: lowest_over_highest[_columns(adata, planted.read(truth))]
             for planted in (truths.BIVALENT_GENES, truths.UNMETHYLATED_GENES, truths.LYS4_ONLY_GENES)}
    for other in ("unmethylated", "lys4_only"):
        assert _auc(ratio[other], ratio["bivalent"]) > 0.95, {name: np.median(values) for name, values in ratio.items()}
    assert np.median(ratio["bivalent"]) < 0.1 < np.median(ratio["lys4_only"]) < np.median(ratio["unmethylated"])
    on_states = truths.BIVALENT_ON_STATES.read(truth)
    assert all(0 < len(states) < len(adata.obs["state"].cat.categories) - 1 for states in on_states.values())


def test_short_range_tfs_co_vary_with_their_targets_within_a_time_point(simulated):
    """Within pseudotime bins (each gene's bin means removed), short-range TFs correlate with their
    targets' mean; long-range TFs do not, and their targets peak a lag later along the time course."""
    adata, truth = simulated["differentiation"]
    expression = _log_normalized(adata)
    pseudotime = adata.obs["pseudotime"].to_numpy()
    in_bin = np.eye(PSEUDOTIME_BINS)[np.minimum((pseudotime * PSEUDOTIME_BINS).astype(int), PSEUDOTIME_BINS - 1)]
    bin_means = (in_bin.T @ expression) / in_bin.sum(axis=0)[:, None]
    within_bins = expression - in_bin @ bin_means
    targets_of = truths.TF_TARGETS.read(truth)

    def within_correlation_and_lag(factor: str) -> tuple[float, float]:
        column, targets = adata.var_names.get_loc(factor), _columns(adata, targets_of[factor])
        correlation = np.corrcoef(within_bins[:, column], within_bins[:, targets].mean(axis=1))[0, 1]
        lag = (np.argmax(bin_means[:, targets].mean(axis=1)) - np.argmax(bin_means[:, column])) / PSEUDOTIME_BINS
        return correlation, lag

    short, long = (np.array([within_correlation_and_lag(factor) for factor in planted.read(truth)])
                   for planted in (truths.SHORT_RANGE_TFS, truths.LONG_RANGE_TFS))
    assert _auc(short[:, 0], long[:, 0]) > 0.95, (np.median(short, axis=0), np.median(long, axis=0))
    assert np.median(short[:, 0]) > 0.1 > abs(np.median(long[:, 0]))
    assert abs(np.median(short[:, 1])) <= 1 / PSEUDOTIME_BINS
    assert abs(np.median(long[:, 1]) - differentiation.LONG_RANGE_LAG) <= 2 / PSEUDOTIME_BINS
    assert list(adata.obs["stage"].cat.categories) == list(differentiation.STAGES)


@pytest.mark.parametrize("label_set", [name for name, entry in truths.GENE_LABEL_SETS.items() if entry.dataset])
def test_labelled_genes_reach_the_top_ranks(simulated, label_set):
    """Both classes show up among the cells' first 64 tokens far more than a typical gene does; where
    the mechanism allows (all but the bivalent sets), their own mean does not tell them apart."""
    entry = truths.GENE_LABEL_SETS[label_set]
    adata, truth = simulated[entry.dataset]
    top_fraction = _top_rank_fraction(adata, simulated["corpus"][0])
    columns = [_columns(adata, planted.read(truth)) for planted in entry.classes]
    for genes in columns:
        assert np.median(top_fraction[genes]) > 3 * np.median(top_fraction) and top_fraction[genes].min() > 0.005
    if "bivalent" not in label_set:
        mean = _log_normalized(adata).mean(axis=0)
        assert 0.25 < _auc(mean[columns[0]], mean[columns[1]]) < 0.75


@pytest.mark.parametrize("label_set", list(truths.GENE_LABEL_SETS))
def test_label_file_of_each_set(tmp_path, simulation, label_set):
    entry = truths.GENE_LABEL_SETS[label_set]
    truth_json = None
    if entry.dataset:
        truth_json = tmp_path / f"{entry.dataset}.truth.json"
        simulator.simulate_dataset(entry.dataset, simulation, SEED, tmp_path / f"{entry.dataset}.h5ad", truth_json)
    output = tmp_path / "labels.tsv"
    simulator.write_gene_labels(label_set, simulation, SEED, output, truth_json)
    labels = pd.read_csv(output, sep="\t")
    assert list(labels.columns) == ["ensembl_id", "label"]
    assert labels["ensembl_id"].is_unique and labels["ensembl_id"].is_monotonic_increasing
    assert set(labels["ensembl_id"]) <= set(world_from_settings(simulation, SEED).gene_ids)
    n_per_class = getattr(simulation, entry.size_key.split(".")[1]).n_per_class
    assert labels["label"].value_counts().to_dict() == {planted.label: n_per_class for planted in entry.classes}
    experiment_schema = load_schema()["properties"]["experiments"]["additionalProperties"]
    assert label_set in experiment_schema["properties"]["gene_labels"]["description"]  # the set is documented


def test_a_label_file_is_read_from_its_datasets_truth_file(tmp_path, simulation):
    truth_json = tmp_path / "stem_cells.truth.json"
    simulator.simulate_dataset("stem_cells", simulation, SEED, tmp_path / "stem_cells.h5ad", truth_json)
    output = tmp_path / "labels.tsv"
    with pytest.raises(InputError, match="--truth-json"):
        simulator.write_gene_labels("bivalent_vs_lys4_only", simulation, SEED, output)
    with pytest.raises(InputError, match="not of 'endothelial'"):
        simulator.write_gene_labels("network_targets_vs_nontargets", simulation, SEED, output, truth_json)
    with pytest.raises(InputError, match="bivalent_vs_unmethylated"):
        simulator.write_gene_labels("bivalent", simulation, SEED, output, truth_json)
    assert not output.exists()
    simulator.write_gene_labels("bivalent_vs_lys4_only", simulation, SEED, output, truth_json)
    bivalent = set(pd.read_csv(output, sep="\t").query("label == 'bivalent'")["ensembl_id"])
    assert bivalent == set(truths.BIVALENT_GENES.read(json.loads(truth_json.read_text())))


def test_planted_classes_stay_apart_from_other_planted_genes(simulated):
    world_truth = simulated["corpus"][1][truths.WORLD.key]
    elsewhere = set(world_truth[truths.HOUSEKEEPING_GENES.key]) | set(world_truth[truths.DOSAGE_SENSITIVE_GENES.key])
    elsewhere |= set(world_truth[truths.DOSAGE_INSENSITIVE_GENES.key])
    for entry in truths.GENE_LABEL_SETS.values():
        if entry.dataset:
            first, second = (set(planted.read(simulated[entry.dataset][1])) for planted in entry.classes)
            assert first and second and not first & second and not (first | second) & elsewhere


@pytest.mark.parametrize("dataset", NEW_DATASETS)
def test_more_genes_than_the_world_holds_are_refused_before_any_output(tmp_path, simulation, dataset):
    too_many = dataclasses.replace(simulation, **{dataset: dataclasses.replace(getattr(simulation, dataset),
                                                                               n_per_class=600)})
    with pytest.raises(InputError, match=f"simulation.{dataset}.n_per_class"):
        simulator.simulate_dataset(dataset, too_many, SEED, tmp_path / "x.h5ad", tmp_path / "x.truth.json")
    assert not list(tmp_path.iterdir())
