import numpy as np
import pandas as pd
import pytest

from workflow_scripts.core.errors import InputError
from workflow_scripts.core.folds import assign_folds, make_folds, read_folds


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
    make_folds(labelled_h5ad, "cell_type", 3, 0, output)
    table = read_folds(output)
    assert list(table.columns) == ["cell_id", "label", "fold"]
    assert len(table) == 300 and table["cell_id"].is_unique


def test_grouped_split_with_too_few_donors_refused(labelled_h5ad, tmp_path):
    output = tmp_path / "folds.tsv"
    with pytest.raises(InputError, match="2 groups for 3 grouped folds"):
        make_folds(labelled_h5ad, "cell_type", 3, 0, output, group_column="donor")
    assert not output.exists()


def test_subset_keeps_listed_values_only(labelled_h5ad, tmp_path):
    output = tmp_path / "folds.tsv"
    make_folds(labelled_h5ad, "cell_type", 3, 0, output, subset={"cell_type": ["a", "c"]})
    assert set(read_folds(output)["label"]) == {"a", "c"}
    with pytest.raises(InputError, match=r"subset values \['z'\] not in the data"):
        make_folds(labelled_h5ad, "cell_type", 3, 0, output, subset={"cell_type": ["a", "z"]})
