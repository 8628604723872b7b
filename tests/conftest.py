"""Shared fixtures: small raw-count AnnData files written in the workflow's input format."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from workflow_scripts.core.config import load_config
from workflow_scripts.core.dictionaries import load_token_dictionary

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO / "config" / "config.yaml"  # the embedded default


@pytest.fixture(scope="session")
def v1_gene_ids() -> np.ndarray:
    """Real Ensembl IDs from Geneformer's V1 vocabulary (specials skipped)."""
    tokens = load_token_dictionary("geneformer_v1_tokens")
    return np.array([token for token in tokens if token.startswith("ENSG")])


def write_counts_h5ad(path: Path, counts: sp.csr_matrix, gene_ids, obs: pd.DataFrame | None = None) -> Path:
    """An h5ad in the workflow's format: CSR int32 counts, Ensembl var index, obs n_counts."""
    counts = sp.csr_matrix(counts)
    obs = pd.DataFrame(index=[f"cell_{i:05d}" for i in range(counts.shape[0])]) if obs is None else obs
    obs = obs.copy()
    obs["n_counts"] = np.asarray(counts.sum(axis=1)).ravel()
    var = pd.DataFrame({"ensembl_id": list(gene_ids)}, index=list(gene_ids))
    ad.AnnData(X=counts, obs=obs, var=var).write_h5ad(path)
    return path


@pytest.fixture
def counts_writer():
    """The writer above, for tests that build their own count matrices."""
    return write_counts_h5ad


@pytest.fixture
def labelled_h5ad(tmp_path, v1_gene_ids) -> Path:
    """300 cells x 200 genes, three classes with distinct marker genes, two donors."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 300, 200
    labels = np.repeat(["a", "b", "c"], n_cells // 3)
    means = rng.gamma(0.5, 2.0, size=n_genes)
    rates = np.tile(means, (n_cells, 1))
    for index, label in enumerate(["a", "b", "c"]):
        rates[labels == label, index * 20:(index + 1) * 20] += 6.0
    counts = sp.csr_matrix(rng.poisson(rates).astype(np.int32))
    obs = pd.DataFrame({"cell_type": labels, "donor": np.tile(["d1", "d2"], n_cells // 2)},
                       index=[f"cell_{i:05d}" for i in range(n_cells)])
    return write_counts_h5ad(tmp_path / "labelled.h5ad", counts, v1_gene_ids[:n_genes], obs)


# The workflow itself, for dry runs and the end-to-end test.
WORKFLOW_FILES = ["Snakefile", "rules", "config", "report", "envs", "profiles"]


def snakemake(workdir: Path, *arguments: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run snakemake from this interpreter's environment in `workdir`."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *arguments], cwd=workdir, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def copy_workflow(target: Path) -> Path:
    """A copy of the workflow (not of results/) in `target`."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target / name)
    return target


def place_paper_files_by_hand(workdir: Path) -> None:
    """Empty stand-ins for the config/paper.yaml files a user places by hand (a portal login, sources
    without a pinned URL): a dry run needs them to exist and reads none of them."""
    datasets = yaml.safe_load((REPO / "config/paper.yaml").read_text())["datasets"]
    for entry in datasets.values():
        if entry and entry["source"] == "h5ad":
            (workdir / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
            (workdir / entry["path"]).touch()


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A copy of the workflow in a temporary directory."""
    return copy_workflow(tmp_path)


TEST_PRESET = ("--cores", "2", "--configfile", "config/test.yaml")


def preset_config() -> dict:
    """The configuration the test preset runs with (config.yaml, then config/test.yaml over it)."""
    return load_config(DEFAULT_CONFIG_PATH, REPO / "config/test.yaml")


@pytest.fixture(scope="session")
def preset_run(tmp_path_factory) -> Path:
    """The test preset run end to end once per session (minutes), for every test that reads its results."""
    workdir = copy_workflow(tmp_path_factory.mktemp("preset_run"))
    result = snakemake(workdir, *TEST_PRESET, timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir
