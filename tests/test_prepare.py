"""The user's own AnnData and the real-data preset: preparation into the canonical h5ad, and the DAG."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import threading
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import place_paper_files_by_hand, snakemake

from workflow_scripts.core.config import load_config
from workflow_scripts.core.counts import check_counts_file
from workflow_scripts.core.dictionaries import (
    load_gene_name_dictionary,
    load_token_dictionary,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.prepare.readers import prepare_dataset
from workflow_scripts.prepare.settings import DatasetSettings


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


def user_dataset(path: Path, options: dict | None = None) -> DatasetSettings:
    """A `datasets` entry of source h5ad (format anndata), as the prepare rule passes it."""
    return DatasetSettings(source="h5ad", path=str(path), format="anndata", files={}, options=options or {})


def test_user_h5ad_becomes_canonical(tmp_path, user_h5ad):
    path, counts = user_h5ad
    output = tmp_path / "prepared.h5ad"
    prepare_dataset(user_dataset(path), {"h5ad": str(path)}, ["cell_type", "donor"], output)
    prepared = ad.read_h5ad(output)
    names = load_gene_name_dictionary()
    assert prepared.X.dtype == np.int32 and list(prepared.obs.columns[:2]) == ["cell_type", "donor"]
    assert set(prepared.var["ensembl_id"]) <= set(names.values())
    assert "NOT_A_GENE" not in prepared.var_names and prepared.n_vars <= 150
    np.testing.assert_array_equal(prepared.obs["n_counts"], np.asarray(prepared.X.sum(axis=1)).ravel())
    assert check_counts_file(output, 16)[0]["n_cells"] == 40


@pytest.mark.parametrize(("arguments", "options", "message"), [
    (dict(inputs={}), {}, "lack"),
    ({}, {"drug": "Nutlin"}, "unknown option"),
    (dict(obs_columns=["disease"]), {}, "disease"),
])
def test_bad_preparation_requests_are_refused(tmp_path, user_h5ad, arguments, options, message):
    path, _ = user_h5ad
    request = dict(settings=user_dataset(path, options), inputs={"h5ad": str(path)}, obs_columns=["cell_type"],
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
    place_paper_files_by_hand(workdir)
    result = snakemake(workdir, "-n", "--cores", "1", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    for expected in ["download_file", "prepare_dataset", "GSM4150377_sciPlex2_pData.txt.gz",
                     "human_pancreas_norm_complexBatch.h5ad", "results/sciplex2_four_class/summary.csv"]:
        assert expected in result.stdout, expected
    for expected in ["results/downloads/checkpoint/model.safetensors", "gene_labels_from_pickle",
                     "results/dosage_sensitivity/summary.csv"]:
        assert expected in result.stdout, expected
    for absent in ["rule pretrain", "simulate_dataset", "sciplex2_two_class"]:
        assert absent not in result.stdout, absent


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments):
        pass


@pytest.fixture
def file_server(tmp_path):
    """A loopback HTTP server for the files put under the yielded folder (no network)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_checkpoint_and_gene_class_pickle_are_downloaded_verified_and_used(workdir, file_server):
    """The real-data path on loopback files: a checkpoint and a gene class pickle are fetched, checked
    (a pinned sha256; a size and a first-use record), converted, and fine-tuning starts from them."""
    from workflow_scripts.core.model import geneformer_config, new_masked_lm

    served, base = file_server
    test_preset = ("--configfile", "config/test.yaml")
    first = snakemake(workdir, "results/reference/token_dictionary.tsv", "results/data/gene_labels/dosage.tsv",
                      "--cores", "2", *test_preset)
    assert first.returncode == 0, first.stderr
    vocabulary = load_token_dictionary(str(workdir / "results/reference/token_dictionary.tsv"))
    settings = load_config(workdir / "config/config.yaml", workdir / "config/test.yaml")
    model_input_size = settings["tokenizer"]["model_input_size"]
    new_masked_lm(geneformer_config(settings["model"], len(vocabulary), model_input_size), 0).save_pretrained(
        served / "checkpoint")
    planted = pd.read_csv(workdir / "results/data/gene_labels/dosage.tsv", sep="\t")
    by_label = planted.groupby("label")["ensembl_id"].apply(list)
    (served / "tfs.pickle").write_bytes(pickle.dumps({"Dosage-sensitive TFs": by_label["dosage_sensitive"],
                                                      "Dosage-insensitive TFs": by_label["dosage_insensitive"]}))
    config_json, weights = served / "checkpoint/config.json", served / "checkpoint/model.safetensors"
    preset = {
        "model": {"download": {
            "config": {"url": f"{base}/checkpoint/config.json", "filename": "config.json",
                       "sha256": hashlib.sha256(config_json.read_bytes()).hexdigest()},
            "weights": {"url": f"{base}/checkpoint/model.safetensors", "filename": "model.safetensors",
                        "size": weights.stat().st_size},
        }},
        "experiments": {"dosage_sensitivity": {"gene_labels": {"url": f"{base}/tfs.pickle", "filename": "tfs.pickle"}}},
    }
    (workdir / "served.yaml").write_text(yaml.safe_dump(preset))
    presets = (*test_preset, "served.yaml")

    dry = snakemake(workdir, "results/dosage_sensitivity/summary.csv", "-n", "--cores", "1", *presets)
    assert dry.returncode == 0, dry.stderr
    assert "rule pretrain" not in dry.stdout and "rule download_file" in dry.stdout

    result = snakemake(workdir, "results/preflight/dosage_sensitivity.json", "--cores", "2", *presets)
    assert result.returncode == 0, result.stderr
    for name in ("config.json", "model.safetensors"):
        assert (workdir / "results/downloads/checkpoint" / name).read_bytes() == (served / "checkpoint" / name).read_bytes()
    converted = pd.read_csv(workdir / "results/gene_labels/dosage_sensitivity.tsv", sep="\t")
    assert converted.sort_values("ensembl_id", ignore_index=True).equals(planted.sort_values("ensembl_id", ignore_index=True))
    recorded = pd.read_csv(workdir / "results/downloads/checksums.tsv", sep="\t")
    assert sorted(recorded["url"]) == [f"{base}/checkpoint/model.safetensors", f"{base}/tfs.pickle"]  # config.json is pinned
    assert "results/downloads/checkpoint" in (workdir / "results/preflight/dosage_sensitivity.json").read_text()


def test_a_changed_pinned_checkpoint_file_stops_before_any_job_uses_it(workdir, file_server):
    served, base = file_server
    (served / "config.json").write_text("{}")
    preset = {"model": {"download": {
        "config": {"url": f"{base}/config.json", "filename": "config.json", "sha256": "0" * 64},
        "weights": {"url": f"{base}/model.safetensors", "filename": "model.safetensors"},
    }}}
    (workdir / "served.yaml").write_text(yaml.safe_dump(preset))
    result = snakemake(workdir, "results/downloads/checkpoint/config.json", "--cores", "1",
                       "--configfile", "config/test.yaml", "served.yaml")
    assert result.returncode != 0
    log = (workdir / "logs/download_file/checkpoint/config.json.log").read_text()
    assert "sha256" in log and "fix:" in log
    assert not (workdir / "results/downloads/checkpoint/config.json").exists()
