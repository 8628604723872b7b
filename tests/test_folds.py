import numpy as np
import pandas as pd
import pytest
from conftest import DEFAULT_CONFIG_PATH

from workflow_scripts.core.config import load_config
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.folds import assign_folds, read_folds
from workflow_scripts.core.tasks import ExperimentSettings
from workflow_scripts.preflight.folds import make_folds

EXPERIMENT = dict(dataset="labelled", task="cell_classification", label_column="cell_type", gene_labels=None,
                  n_cells=None, test_cell_fraction=0.3, min_cells_per_gene=5, n_training_cells=None, group_column=None, split="stratified",
                  n_folds=3, subset={})


def experiment(**changes) -> ExperimentSettings:
    """A cell experiment of the labelled fixture, as the schema fills it, with `changes`."""
    return ExperimentSettings.from_config({**EXPERIMENT, **changes})


def test_folds_stratified_disjoint_and_seeded():
    labels = np.array(["a"] * 50 + ["b"] * 25 + ["c"] * 10)
    folds = assign_folds(labels, 5, seed=3)
    assert set(folds) == set(range(5))
    for fold in range(5):  # each class spread evenly over the folds
        held_out = labels[folds == fold]
        assert (held_out == "a").sum() == 10 and (held_out == "b").sum() == 5 and (held_out == "c").sum() == 2
    # each cell is held out exactly once, so test sets are disjoint and cover everything
    assert (folds >= 0).all()
    assert np.array_equal(folds, assign_folds(labels, 5, seed=3))
    assert not np.array_equal(folds, assign_folds(labels, 5, seed=4))


def test_grouped_folds_never_share_a_group():
    rng = np.random.default_rng(0)
    groups = rng.choice([f"donor{i}" for i in range(8)], 400)
    labels = rng.choice(["x", "y"], 400)
    folds = assign_folds(labels, 4, seed=0, groups=groups)
    per_group = pd.Series(folds).groupby(groups).nunique()
    assert (per_group == 1).all()


def test_make_folds_file(labelled_h5ad, tmp_path):
    output = tmp_path / "folds.tsv"
    make_folds(experiment(), 0, output, h5ad_path=labelled_h5ad)
    table = read_folds(output)
    assert list(table.columns) == ["cell_id", "label", "fold"]
    assert len(table) == 300 and table["cell_id"].is_unique


def test_grouped_split_with_too_few_donors_refused(labelled_h5ad, tmp_path):
    output = tmp_path / "folds.tsv"
    with pytest.raises(InputError, match="2 groups for 3 grouped folds"):
        make_folds(experiment(group_column="donor", split="grouped"), 0, output, h5ad_path=labelled_h5ad)
    assert not output.exists()


def test_subset_keeps_listed_values_only(labelled_h5ad, tmp_path):
    output = tmp_path / "folds.tsv"
    make_folds(experiment(subset={"cell_type": ["a", "c"]}), 0, output, h5ad_path=labelled_h5ad)
    assert set(read_folds(output)["label"]) == {"a", "c"}
    with pytest.raises(InputError, match=r"subset values \['z'\] not in the data"):
        make_folds(experiment(subset={"cell_type": ["a", "z"]}), 0, output, h5ad_path=labelled_h5ad)


def test_group_column_splits_only_when_grouped(labelled_h5ad, tmp_path):
    output = tmp_path / "folds.tsv"
    make_folds(experiment(group_column="donor"), 0, output, h5ad_path=labelled_h5ad)  # split: stratified
    assert list(read_folds(output).columns) == ["cell_id", "label", "fold"]


def test_experiment_settings_mirror_every_configured_experiment():
    config = load_config(DEFAULT_CONFIG_PATH)
    for name, entry in config["experiments"].items():
        settings = ExperimentSettings.from_config(ExperimentSettings.section_of(entry), f"experiments.{name}")
        assert settings.n_folds == entry["n_folds"] and settings.task == entry["task"]


def test_misspelt_or_missing_experiment_key_is_refused_by_name():
    with pytest.raises(InputError, match="n_fold.*is not a setting of ExperimentSettings"):
        ExperimentSettings.from_config({**EXPERIMENT, "n_fold": 3})
    incomplete = {key: value for key, value in EXPERIMENT.items() if key != "split"}
    with pytest.raises(InputError, match="split.*is missing"):
        ExperimentSettings.from_config(incomplete)


def test_a_task_names_the_input_it_lacks(tmp_path):
    genes = experiment(task="gene_classification", label_column=None, gene_labels="labels.tsv")
    with pytest.raises(InputError, match="--gene-labels-tsv.*needed by a gene_classification task"):
        make_folds(genes, 0, tmp_path / "folds.tsv", h5ad_path=tmp_path / "x.h5ad")
    with pytest.raises(InputError, match="--h5ad-path.*needed by a cell_classification task"):
        make_folds(experiment(), 0, tmp_path / "folds.tsv")
