"""Preflight refusals (issue: bad input stops before training, naming the input and the fix)."""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from workflow_scripts.core.dictionaries import write_dictionary_tsv
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.preflight.checks import check_experiment

EXPERIMENT = {"task": "cell_classification", "label_column": "cell_type", "group_column": None, "split": "stratified", "n_folds": 3, "subset": {}}


@pytest.fixture
def reference(tmp_path, v1_gene_ids):
    genes = list(v1_gene_ids[:200])
    tokens, medians = tmp_path / "tokens.tsv", tmp_path / "medians.tsv"
    write_dictionary_tsv({"<pad>": 0, "<mask>": 1, **{g: i + 2 for i, g in enumerate(genes)}}, tokens, "token", "token_id")
    write_dictionary_tsv({g: 1.0 for g in genes}, medians, "ensembl_id", "median")
    return tokens, medians


def run_check(h5ad, reference, output, experiment=EXPERIMENT, minimum=100, origin=None):
    check_experiment("test", experiment, h5ad, reference[0], reference[1],
                     TokenizerSettings(model_input_size=2048, special_tokens=False, chunk_size=64),
                     ChecksSettings(min_genes_in_vocabulary=minimum, min_genes_per_class=10, min_count_share_in_vocabulary=0.5), output,
                     dataset_origin=origin)


def test_good_input_passes(labelled_h5ad, reference, tmp_path):
    output = tmp_path / "preflight.json"
    run_check(labelled_h5ad, reference, output)
    assert '"genes_in_vocabulary": 200' in output.read_text()


def rewrite(path, edit):
    adata = ad.read_h5ad(path)
    edit(adata)
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.obs.drop(columns="cell_type", inplace=True),
         "obs['cell_type'] (experiments.test.label_column): column missing"),
        (lambda a: a.obs.drop(columns="n_counts", inplace=True), "n_counts"),
        (lambda a: setattr(a, "X", sp.csr_matrix(a.X.astype(np.float32) * 0.37)), "not raw counts"),
        (lambda a: setattr(a, "X", sp.csr_matrix(-a.X.astype(np.float32))), "not raw counts"),
        (lambda a: a.obs.__setitem__("cell_type", ["a"] * 298 + ["rare", "rare"]),
         "rare (2 cells)\n  fix: keep only the larger classes with experiments.test.subset"),
        (lambda a: a.obs.__setitem__("cell_type", "a"),
         "only one class (a)\n  fix: set experiments.test.label_column to a column with two or more classes"),
    ],
)
def test_bad_input_refused_with_no_output(labelled_h5ad, reference, tmp_path, edit, message):
    rewrite(labelled_h5ad, edit)
    output = tmp_path / "preflight.json"
    with pytest.raises(InputError) as error:
        run_check(labelled_h5ad, reference, output)
    assert message in str(error.value)
    assert str(labelled_h5ad) in str(error.value) and "fix:" in str(error.value)
    assert not output.exists()


def test_too_few_genes_in_vocabulary_reports_overlap(tmp_path, reference, v1_gene_ids, counts_writer):
    rng = np.random.default_rng(0)
    genes = list(v1_gene_ids[150:250])  # only 50 of these are in the 200-gene reference
    obs = pd.DataFrame({"cell_type": np.repeat(["a", "b"], 30)},
                                         index=[f"c{i}" for i in range(60)])
    h5ad = counts_writer(tmp_path / "few.h5ad", sp.csr_matrix(rng.poisson(2, (60, 100)).astype(np.int32)), genes, obs)
    output = tmp_path / "preflight.json"
    with pytest.raises(InputError, match="only 50 of 100 genes[\\s\\S]*set reference.token_dictionary"):
        run_check(h5ad, reference, output)
    assert not output.exists()


def test_share_of_genes_and_counts_kept_is_reported_and_warned_of(tmp_path, reference, v1_gene_ids, counts_writer,
                                                                   caplog):
    """150 of the 200 genes are in the reference; the 50 outside it hold most of the counts."""
    genes = list(v1_gene_ids[50:250])
    counts = np.ones((60, 200), dtype=np.int32)
    counts[:, 150:] = 20  # 50 genes x 20 against 150 genes x 1: a quarter of the counts kept
    obs = pd.DataFrame({"cell_type": np.repeat(["a", "b"], 30)}, index=[f"c{i}" for i in range(60)])
    h5ad = counts_writer(tmp_path / "shares.h5ad", sp.csr_matrix(counts), genes, obs)
    output = tmp_path / "preflight.json"
    with caplog.at_level(logging.WARNING):
        run_check(h5ad, reference, output)
    found = json.loads(output.read_text())
    assert found["genes_in_vocabulary"] == 150 and found["gene_share_in_vocabulary"] == 0.75
    assert found["count_share_in_vocabulary"] == pytest.approx(150 / (150 + 50 * 20))
    assert "holding 13.0% of its counts" in caplog.text and "reference.token_dictionary" in caplog.text


def test_grouped_split_needs_enough_donors(labelled_h5ad, reference, tmp_path):
    grouped = {**EXPERIMENT, "split": "grouped", "group_column": "donor"}
    with pytest.raises(InputError, match="2 groups for 3 grouped folds"):
        run_check(labelled_h5ad, reference, tmp_path / "preflight.json", experiment=grouped)


def test_a_refusal_names_the_users_file_beside_the_workflows_copy(labelled_h5ad, reference, tmp_path):
    rewrite(labelled_h5ad, lambda a: a.obs.__setitem__("cell_type", "a"))
    with pytest.raises(InputError) as error:
        run_check(labelled_h5ad, reference, tmp_path / "preflight.json", origin="data/mine.h5ad (datasets.mine.path)")
    assert error.value.source.startswith(f"{labelled_h5ad} (from data/mine.h5ad (datasets.mine.path)): obs['cell_type']")
