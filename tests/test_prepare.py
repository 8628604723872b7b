"""The user's own AnnData and the real-data preset: preparation into the canonical h5ad, and the DAG."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from workflow_scripts.counts import check_counts_file
from workflow_scripts.dictionaries import load_gene_name_dictionary
from workflow_scripts.errors import InputError
from workflow_scripts.readers import prepare_dataset

from conftest import snakemake


@pytest.fixture
def user_h5ad(tmp_path):
    """A user's file as many are shared: gene symbols, log-normalized X, raw counts in layers['counts']."""
    rng = np.random.default_rng(0)
    symbols = sorted(symbol for symbol in load_gene_name_dictionary() if symbol.isalnum())[:150] + ["NOT_A_GENE"]
    counts = sp.csr_matrix(rng.poisson(1.0, (40, len(symbols))).astype(np.float32))
    normalized = sp.diags(1e4 / np.asarray(counts.sum(axis=1)).ravel()) @ counts
    normalized.data = np.log1p(normalized.data)
    obs = pd.DataFrame({"cell_type": np.repeat(["alpha", "beta"], 20), "donor": np.tile(["d1", "d2"], 20)},
                       index=[f"cell{i}" for i in range(40)])
    adata = ad.AnnData(X=sp.csr_matrix(normalized), obs=obs, var=pd.DataFrame(index=symbols))
    adata.layers["counts"] = counts
    path = tmp_path / "mine.h5ad"
    adata.write_h5ad(path)
    return path, counts


def test_user_h5ad_becomes_canonical(tmp_path, user_h5ad):
    path, counts = user_h5ad
    output = tmp_path / "prepared.h5ad"
    prepare_dataset("anndata", {"h5ad": str(path)}, ["cell_type", "donor"], {}, output)
    prepared = ad.read_h5ad(output)
    names = load_gene_name_dictionary()
    assert prepared.X.dtype == np.int32 and list(prepared.obs.columns[:2]) == ["cell_type", "donor"]
    assert set(prepared.var["ensembl_id"]) <= set(names.values())
    assert "NOT_A_GENE" not in prepared.var_names and prepared.n_vars <= 150
    np.testing.assert_array_equal(prepared.obs["n_counts"], np.asarray(prepared.X.sum(axis=1)).ravel())
    assert check_counts_file(output, 16)["n_cells"] == 40


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(format="loom"), "unknown format"),
    (dict(inputs={}), "lack"),
    (dict(options={"drug": "Nutlin"}), "unknown option"),
    (dict(obs_columns=["disease"]), "disease"),
])
def test_bad_preparation_requests_are_refused(tmp_path, user_h5ad, arguments, message):
    path, _ = user_h5ad
    request = dict(format="anndata", inputs={"h5ad": str(path)}, obs_columns=["cell_type"], options={},
                   output_h5ad=tmp_path / "out.h5ad") | arguments
    with pytest.raises(InputError, match=message):
        prepare_dataset(**request)
    assert not (tmp_path / "out.h5ad").exists()


def test_an_experiment_on_the_users_own_file(workdir, user_h5ad):
    """Declared with a path, a label column and a donor column: prepared, not simulated."""
    path, _ = user_h5ad
    preset = {
        "datasets": {"mine": {"source": "h5ad", "path": str(path)}},
        "experiments": {"my_cells": {"dataset": "mine", "label_column": "cell_type", "group_column": "donor",
                                     "split": "grouped", "n_folds": 2,
                                     "methods": {"geneformer": {"kind": "finetune"}, "pca_rf": {"kind": "pca_rf"}}}},
    }
    (workdir / "mine.yaml").write_text(yaml.safe_dump(preset))
    result = snakemake(workdir, "results/my_cells/summary.csv", "-n", "--cores", "1", "--configfile", "mine.yaml")
    assert result.returncode == 0, result.stderr
    assert "prepare_dataset" in result.stdout and "dataset=mine" in result.stdout


def test_real_data_preset_downloads_and_prepares(workdir):
    (workdir / "data").mkdir()
    (workdir / "data/human_dcm_hcm_scportal_03.17.2022.h5ad").touch()  # fetched by hand (portal login)
    (workdir / "resources/geneformer/gf-6L-30M-i2048").mkdir(parents=True)
    result = snakemake(workdir, "-n", "--cores", "1", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    for expected in ["download_file", "prepare_dataset", "GSM4150377_sciPlex2_pData.txt.gz",
                     "human_pancreas_norm_complexBatch.h5ad", "results/sciplex2_four_class/summary.csv"]:
        assert expected in result.stdout, expected
    for absent in ["pretrain", "simulate_dataset", "dosage_sensitivity", "sciplex2_two_class"]:
        assert absent not in result.stdout, absent
