"""Cross-experiment tables: all_experiments and reported_vs_reproduced."""

import re

import pandas as pd
import pytest
import yaml
from conftest import DEFAULT_CONFIG_PATH

from workflow_scripts.aggregate.tables import (
    collect_experiments,
    compare_with_reported,
)
from workflow_scripts.core.errors import InputError

REPORTED = DEFAULT_CONFIG_PATH.parent / "reported.yaml"


@pytest.fixture
def pancreas_tables(tmp_path):
    summary = pd.DataFrame({
        "experiment": "pancreas_celltype", "method": ["geneformer_baseline", "geneformer_enhanced"], "n_folds": 5,
        **{metric: ["0.800 ± 0.010", "0.900 ± 0.020"] for metric in ["accuracy", "macro_f1", "weighted_f1", "macro_auc"]},
    })
    per_class = pd.DataFrame({"method": ["geneformer_baseline", "geneformer_enhanced"], "class": ["alpha", "alpha"],
                              "f1_mean": [0.91, 0.97]})
    summary.to_csv(tmp_path / "summary.csv", index=False)
    per_class.to_csv(tmp_path / "per_class.csv", index=False)
    return tmp_path / "summary.csv", tmp_path / "per_class.csv"


def test_every_reported_row_appears_once(pancreas_tables, tmp_path):
    summary, per_class = pancreas_tables
    compare_with_reported(REPORTED, [("pancreas_celltype", summary, per_class)], {"pancreas_celltype": "simulated"},
                          tmp_path / "rvr.csv", tmp_path / "rvr.md")
    table = pd.read_csv(tmp_path / "rvr.csv", dtype=str)
    reported = yaml.safe_load(REPORTED.read_text())
    assert len(table) == len(reported)
    assert list(table["quantity"]) == [row["quantity"] for row in reported]
    accuracy = table[table["quantity"] == "pancreas cell-type accuracy, enhanced model"].iloc[0]
    assert (accuracy["reported"], accuracy["reproduced"], accuracy["data"]) == ("~0.97", "0.900 ± 0.020", "simulated")
    alpha = table[table["quantity"] == "Alpha, enhanced"].iloc[0]
    assert alpha["reproduced"] == "0.970"
    dosage = table[table["quantity"] == "dosage sensitivity AUC, baseline"].iloc[0]
    assert dosage["reproduced"] == "not run in this configuration"
    assert re.search(r"\| Alpha, enhanced +\| 0.99 +\| 0.970 ", (tmp_path / "rvr.md").read_text())


def test_reported_entry_without_value_refused(tmp_path, pancreas_tables):
    bad = tmp_path / "reported.yaml"
    bad.write_text("- {document: x, source: y, quantity: z}\n")
    with pytest.raises(InputError, match="missing \\['reported'\\]"):
        compare_with_reported(bad, [], {}, tmp_path / "a.csv", tmp_path / "a.md")


def test_all_experiments_table(pancreas_tables, tmp_path):
    summary, _ = pancreas_tables
    collect_experiments([("pancreas_celltype", "cell_classification", summary)], tmp_path / "all.csv", tmp_path / "all.md")
    table = pd.read_csv(tmp_path / "all.csv")
    assert list(table.columns) == ["experiment", "task", "method", "accuracy", "macro_f1", "weighted_f1",
                                   "macro_auc", "n_folds"]
    assert table.loc[1, "macro_auc"] == "0.900 ± 0.020"


def test_every_reported_row_names_a_cell_of_the_default_or_the_network_preset():
    """A row whose experiment or method is spelt wrong would say "not run" forever: each must name a
    method of an experiment of config.yaml, or of config/network_chromatin.yaml (with its sweep)."""
    from workflow_scripts.core.config import load_config
    from workflow_scripts.sweep.wiring import add_size_experiments

    experiments = dict(load_config(DEFAULT_CONFIG_PATH)["experiments"])
    network = load_config(DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_PATH.parent / "network_chromatin.yaml")
    add_size_experiments(network)
    experiments.update(network["experiments"])
    for row in yaml.safe_load(REPORTED.read_text()):
        if "experiment" in row:
            assert row["method"] in experiments[row["experiment"]]["methods"], row
