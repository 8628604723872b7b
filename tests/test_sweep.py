"""The training-size sweep: one experiment per size added to the config, and its table and figure."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import DEFAULT_CONFIG_PATH

from workflow_scripts.core.config import load_config
from workflow_scripts.core.errors import InputError
from workflow_scripts.sweep.tables import sweep_table, write_training_size_sweep
from workflow_scripts.sweep.wiring import add_size_experiments

SWEEP = {"experiment": "dosage_sensitivity", "methods": ["geneformer_baseline"], "n_training_cells": [200, 50]}


def test_each_size_is_an_experiment_with_the_swept_methods():
    config = load_config(DEFAULT_CONFIG_PATH, overrides={"training_size_sweep": SWEEP})
    names = add_size_experiments(config)
    assert names == ["dosage_sensitivity_200_training_cells", "dosage_sensitivity_50_training_cells"]
    base = config["experiments"]["dosage_sensitivity"]
    for name, size in zip(names, (200, 50)):
        entry = config["experiments"][name]
        assert entry["n_training_cells"] == size and list(entry["methods"]) == ["geneformer_baseline"]
        assert {key: value for key, value in entry.items() if key not in ("n_training_cells", "methods")} == \
            {key: value for key, value in base.items() if key not in ("n_training_cells", "methods")}
    assert add_size_experiments(load_config(DEFAULT_CONFIG_PATH)) == []  # no sweep by default


@pytest.mark.parametrize(("sweep", "named"), [
    ({**SWEEP, "experiment": "pancreas_celltype"}, "training_size_sweep.experiment"),
    ({**SWEEP, "methods": ["gene_pca_rf"]}, "training_size_sweep.methods"),
])
def test_a_sweep_of_what_is_not_a_fine_tuned_gene_task_is_refused(sweep, named):
    config = load_config(DEFAULT_CONFIG_PATH, overrides={"training_size_sweep": sweep})
    with pytest.raises(InputError, match=named):
        add_size_experiments(config)


def write_run(directory, experiment, n_train, rows):
    (directory / experiment).mkdir(parents=True)
    summary = pd.DataFrame(rows, columns=["method", "macro_auc_mean", "macro_auc_sd", "n_folds"])
    summary.to_csv(directory / experiment / "summary.csv", index=False)
    cells = pd.DataFrame({"cell_id": [f"c{i}" for i in range(n_train + 10)],
                          "role": ["train"] * n_train + ["test"] * 10})
    cells.to_csv(directory / experiment / "cells.tsv", sep="\t", index=False)
    return [experiment, directory / experiment / "summary.csv", directory / experiment / "cells.tsv"]


def test_table_and_figure_of_the_sweep(tmp_path):
    runs = [write_run(tmp_path, "genes", 300, [["geneformer", 0.8, 0.05, 3], ["gene_pca_rf", 0.7, 0.02, 3]]),
            write_run(tmp_path, "genes_100_training_cells", 100, [["geneformer", 0.75, 0.04, 3]]),
            write_run(tmp_path, "genes_30_training_cells", 30, [["geneformer", 0.6, 0.1, 3]])]
    table = sweep_table(runs)
    swept = table[table["role"] == "swept"]
    assert swept["n_training_cells"].tolist() == [300, 100, 30] and (swept["method"] == "geneformer").all()
    reference = table[table["role"] != "swept"]
    assert reference["method"].tolist() == ["gene_pca_rf"] and reference["n_training_cells"].tolist() == [300]
    assert swept["macro_auc"].tolist() == ["0.800 ± 0.050", "0.750 ± 0.040", "0.600 ± 0.100"]
    write_training_size_sweep(runs, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "figures")
    assert (tmp_path / "figures/training_size.png").stat().st_size > 10_000
    row = next(line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("|") and line.split("|")[1].strip() == "30")
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["30", "geneformer", "swept", "0.600 ± 0.100", "3"]
