"""Bad input stops before any training (issue 9.1): each case writes one small bad input in its real
format, calls the entry point the workflow reaches it through (the config validator, the preparer,
the preflight, the tokenizer, the download, the pickle converter), and asserts that it is refused
with an InputError naming the input and the fix, and that the step left nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import DEFAULT_CONFIG_PATH, snakemake, write_counts_h5ad

from workflow_scripts.cli import main
from workflow_scripts.core.config import load_config
from workflow_scripts.core.dictionaries import (
    load_token_dictionary,
    write_dictionary_tsv,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.preflight.checks import check_experiment
from workflow_scripts.prepare.download import download_file
from workflow_scripts.prepare.readers import gene_labels_from_pickle, prepare_dataset
from workflow_scripts.prepare.settings import DatasetSettings, DownloadSettings
from workflow_scripts.tokenization.tokenizer import tokenize_dataset

N_CELLS, N_GENES, N_FOLDS = 60, 150, 3
CELL_EXPERIMENT = {"task": "cell_classification", "label_column": "cell_type", "group_column": None,
                   "split": "stratified", "n_folds": N_FOLDS, "subset": {}}
MODEL_INPUT_SIZE = 64
TOKENIZER = TokenizerSettings(model_input_size=MODEL_INPUT_SIZE, special_tokens=False, chunk_size=16)
CHECKS = ChecksSettings(min_genes_in_vocabulary=100, min_genes_per_class=4, min_count_share_in_vocabulary=0.5)
pytestmark = pytest.mark.filterwarnings("ignore:(Observation|Variable) names are not unique")  # duplicate ids


@dataclass
class Bench:
    """A clean starting point in tmp_path: a token dictionary and medians for the dataset's genes,
    inputs under in/, and the step's outputs under out/ (which must hold nothing new afterwards)."""

    inputs: Path
    out: Path
    genes: list[str]
    tokens: Path
    medians: Path
    cleanup: contextlib.ExitStack

    def counts(self, seed: int = 0) -> np.ndarray:
        """Dense Poisson counts in which every cell has counts."""
        dense = np.random.default_rng(seed).poisson(2.0, (N_CELLS, N_GENES)).astype(np.float64)
        dense[:, 0] += 1
        return dense

    def obs(self, **columns) -> pd.DataFrame:
        defaults = {"cell_type": np.resize(["alpha", "beta"], N_CELLS), "donor": np.resize(["d1", "d2", "d3"], N_CELLS)}
        return pd.DataFrame({**defaults, **columns}, index=[f"cell_{i:03d}" for i in range(N_CELLS)])

    def canonical(self, dense=None, obs=None, genes=None, name: str = "cells.h5ad") -> Path:
        """A file in the canonical form the preflight and tokenizer read (written as prepare does)."""
        dense = self.counts() if dense is None else dense
        return write_counts_h5ad(self.inputs / name, sp.csr_matrix(dense.astype(np.int32)),
                                 self.genes if genes is None else genes, self.obs() if obs is None else obs)

    def user_h5ad(self, matrix, obs=None, name: str = "mine.h5ad") -> Path:
        """A user's own h5ad as shared: counts (or whatever is stored) in X, Ensembl IDs as var names."""
        path = self.inputs / name
        obs = self.obs() if obs is None else obs
        ad.AnnData(X=sp.csr_matrix(matrix), obs=obs, var=pd.DataFrame(index=self.genes)).write_h5ad(path)
        return path


@pytest.fixture
def bench(tmp_path, v1_gene_ids) -> Iterator[Bench]:
    genes = list(v1_gene_ids[:N_GENES])
    inputs = tmp_path / "in"
    inputs.mkdir()
    tokens, medians = inputs / "tokens.tsv", inputs / "medians.tsv"
    write_dictionary_tsv({"<pad>": 0, "<mask>": 1, **{gene: i + 2 for i, gene in enumerate(genes)}}, tokens,
                         "token", "token_id")
    write_dictionary_tsv({gene: 1.0 for gene in genes}, medians, "ensembl_id", "median")
    with contextlib.ExitStack() as cleanup:
        yield Bench(inputs, tmp_path / "out", genes, tokens, medians, cleanup)


@dataclass
class Case:
    """What a case calls, what the refusal must name (the input: a path or config key; the problem),
    and the output the step would have written."""

    run: Callable[[], object]
    names: str
    says: str
    output: Path | None = None


# --- entry points, called as the rules call them ----------------------------------------------

def config_case(bench: Bench, preset: dict, names: str, says: str) -> Case:
    """A preset merged over config/config.yaml, as `snakemake --configfile` does; validated as common.smk does."""
    path = bench.inputs / "preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    return Case(lambda: load_config(DEFAULT_CONFIG_PATH, path), names, says)


def prepare_case(bench: Bench, h5ad: Path, says: str, obs_columns=("cell_type",), output: Path | None = None,
                 names: str | None = None) -> Case:
    """rules/prepare.smk: a user's h5ad turned into the canonical file."""
    output = bench.out / "data" / "mine.h5ad" if output is None else output
    dataset = DatasetSettings(source="h5ad", path=str(h5ad), format="anndata", files={}, options={})
    return Case(lambda: prepare_dataset(dataset, {"h5ad": str(h5ad)}, list(obs_columns), output),
                str(h5ad) if names is None else names, says, output)


def preflight_case(bench: Bench, h5ad: Path, says: str, experiment: dict | None = None, names: str | None = None,
                   column: str | None = None, checkpoint: Path | None = None, gene_labels: Path | None = None,
                   tokens: Path | None = None) -> Case:
    """rules/preflight.smk (check_experiment): the report pretraining and fine-tuning wait for. The
    refusal names the file (and the obs `column`), or `names`."""
    output = bench.out / "preflight" / "exp.json"

    def run():
        check_experiment("exp", experiment or CELL_EXPERIMENT, h5ad, tokens or bench.tokens, bench.medians,
                         TOKENIZER, CHECKS, output_json=output,
                         checkpoint=None if checkpoint is None else str(checkpoint),
                         gene_labels_tsv=None if gene_labels is None else str(gene_labels))
    return Case(run, names or (f"{h5ad}: obs['{column}']" if column else str(h5ad)), says, output)


def tokenize_case(bench: Bench, h5ad: Path, says: str) -> Case:
    """rules/tokenize.smk: the rank value encoding of a prepared dataset."""
    output = bench.out / "tokenized" / "cells.dataset"
    return Case(lambda: tokenize_dataset(h5ad, bench.tokens, bench.medians, output, TOKENIZER, CHECKS, ["cell_type"]),
                str(h5ad), says, output)


def saved_checkpoint(bench: Bench, vocab_size: int, model_input_size: int = MODEL_INPUT_SIZE) -> Path:
    """A tiny BERT masked LM in save_pretrained form (config.json + model.safetensors)."""
    from transformers import BertConfig, BertForMaskedLM

    path = bench.inputs / "checkpoint"
    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=model_input_size, pad_token_id=0)
    BertForMaskedLM(config).save_pretrained(path)
    return path


def vocab_size(bench: Bench) -> int:
    return len(load_token_dictionary(str(bench.tokens)))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments):
        pass


def serve(bench: Bench, name: str, payload: bytes) -> str:
    """A loopback HTTP server (no network) serving one file until the case ends; returns its URL."""
    served = bench.inputs / "served"
    served.mkdir(exist_ok=True)
    (served / name).write_bytes(payload)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    bench.cleanup.callback(httpd.server_close)
    bench.cleanup.callback(httpd.shutdown)
    return f"http://127.0.0.1:{httpd.server_address[1]}/{name}"


class Exploit:
    """A pickle that runs a shell command when loaded by a plain unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- the cases ---------------------------------------------------------------------------------

def with_values(bench: Bench, values: list[float]) -> np.ndarray:
    dense = bench.counts()
    dense[3, 5:5 + len(values)] = values
    return dense


def rewritten(path: Path, edit: Callable[[ad.AnnData], object]) -> Path:
    adata = ad.read_h5ad(path)
    edit(adata)
    adata.write_h5ad(path)
    return path


def unlinked(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


def zero_count_cell(bench: Bench) -> np.ndarray:
    dense = bench.counts()
    dense[3] = 0
    return dense


def corrupt(bench: Bench) -> Path:
    path = bench.inputs / "garbage.h5ad"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def truncated(bench: Bench) -> Path:
    path = bench.canonical(name="whole.h5ad")
    cut = bench.inputs / "truncated.h5ad"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def unwritable_folder(bench: Bench) -> Path:
    """An output folder the job cannot create: a file already holds its name."""
    bench.out.mkdir()
    (bench.out / "data").write_text("not a folder")
    return bench.out / "data" / "mine.h5ad"


def read_only_folder(bench: Bench) -> Path:
    (bench.out / "data").mkdir(parents=True)
    (bench.out / "data").chmod(0o555)
    bench.cleanup.callback((bench.out / "data").chmod, 0o755)
    return bench.out / "data" / "mine.h5ad"


def gene_labels_tsv(bench: Bench, n_sensitive: int, n_insensitive: int) -> Path:
    path = bench.inputs / "gene_labels.tsv"
    labels = ["dosage_sensitive"] * n_sensitive + ["dosage_insensitive"] * n_insensitive
    pd.DataFrame({"ensembl_id": bench.genes[:len(labels)], "label": labels}).to_csv(path, sep="\t", index=False)
    return path


def duplicated_genes(bench: Bench) -> Path:
    genes = list(bench.genes)
    genes[7] = genes[6]
    return bench.canonical(genes=genes)


def cells_without_tokens(bench: Bench) -> Path:
    """Two cells whose counts all lie in genes outside the token dictionary."""
    dense = np.hstack([bench.counts(), np.zeros((N_CELLS, 5))])
    dense[[4, 9], :N_GENES] = 0
    dense[[4, 9], N_GENES:] = 3
    outside = [f"ENSG{99_000_000_000 + i:011d}" for i in range(5)]
    return bench.canonical(dense=dense, genes=bench.genes + outside)


def tampered_download(bench: Bench) -> Case:
    published = b"the file as published\n" * 100
    url = serve(bench, "counts.h5ad", published.replace(b"published", b"tampered!"))
    sha256, output = hashlib.sha256(published).hexdigest(), bench.out / "downloads" / "counts.h5ad"
    source = DownloadSettings(url=url, filename=output.name, sha256=sha256, size=None)
    return Case(lambda: download_file(source, output, checksum_record=output.parent / "checksums.tsv",
                                      retries=0, backoff_seconds=0), url, "sha256", output)


def malicious_pickle(bench: Bench) -> Case:
    path = bench.inputs / "gene_classes.pickle"
    path.write_bytes(pickle.dumps({"Dosage-sensitive TFs": [Exploit(bench.inputs / "pwned")],
                                   "Dosage-insensitive TFs": bench.genes[:10]}))
    output = bench.out / "gene_labels" / "exp.tsv"
    return Case(lambda: gene_labels_from_pickle(path, output), str(path), "refused global", output)


CASES: dict[str, Callable[[Bench], Case]] = {
    # config: refused by the validator Snakemake runs before building the DAG (rules/common.smk)
    "config_schema_violation": lambda b: config_case(b, {"finetuning": {"epochs": 0}}, "finetuning.epochs",
                                                     "does not match the configuration schema"),
    "config_unknown_key": lambda b: config_case(b, {"pretrainig": {"epochs": 1}}, "pretrainig", "not allowed"),
    "config_unknown_experiment": lambda b: config_case(
        b, {"quantization": {"models": [{"experiment": "pancreas", "method": "geneformer_enhanced"}]}},
        "quantization.models[0].experiment", "'pancreas' is not a cell task"),
    "config_unknown_dataset": lambda b: config_case(
        b, {"experiments": {"pancreas_celltype": {"dataset": "pancreatic"}}}, "experiments.pancreas_celltype.dataset",
        "'pancreatic', which is not under datasets"),
    "config_h5ad_without_path": lambda b: config_case(b, {"datasets": {"mine": {"source": "h5ad"}}},
                                                      "datasets.mine", "needs a path"),
    "config_grouped_split_without_group": lambda b: config_case(
        b, {"experiments": {"pancreas_celltype": {"split": "grouped"}}}, "experiments.pancreas_celltype",
        "needs a group_column"),
    # the user's h5ad: refused by the preparer (rules/prepare.smk), the first job that reads it
    "missing_h5ad": lambda b: prepare_case(b, b.inputs / "absent.h5ad", "file not found"),
    "corrupt_h5ad": lambda b: prepare_case(b, corrupt(b), "not a readable h5ad"),
    "truncated_h5ad": lambda b: prepare_case(b, truncated(b), "not a readable h5ad"),
    "empty_matrix": lambda b: prepare_case(b, b.user_h5ad(np.zeros((0, N_GENES)), obs=b.obs().iloc[:0]),
                                           "none of its 0 cells"),
    "nan_counts": lambda b: prepare_case(b, b.user_h5ad(with_values(b, [np.nan])), "non-finite"),
    "infinite_counts": lambda b: prepare_case(b, b.user_h5ad(with_values(b, [np.inf])), "non-finite"),
    "negative_counts": lambda b: prepare_case(b, b.user_h5ad(with_values(b, [-2.0])), "negative values"),
    "non_count_floats": lambda b: prepare_case(b, b.user_h5ad(b.counts() * 31.7), "non-integer values"),
    "duplicate_cell_ids": lambda b: prepare_case(
        b, b.user_h5ad(b.counts(), obs=b.obs().set_axis([f"cell_{i % 50:03d}" for i in range(N_CELLS)])),
        "cell ids (obs index) repeat"),
    "missing_label_column": lambda b: prepare_case(b, b.user_h5ad(b.counts()), "obs lacks the column(s) ['disease']",
                                                   obs_columns=("cell_type", "disease")),
    "unwritable_output_folder": lambda b: prepare_case(b, b.user_h5ad(b.counts()), "cannot be written",
                                                       output=unwritable_folder(b), names=str(b.out / "data")),
    "read_only_output_folder": lambda b: prepare_case(b, b.user_h5ad(b.counts()), "cannot be written",
                                                      output=read_only_folder(b), names=str(b.out / "data")),
    # the prepared dataset: refused by the preflight, which pretraining and fine-tuning wait for
    "cells_with_zero_counts": lambda b: preflight_case(b, b.canonical(zero_count_cell(b)), "cell 3 has 0"),
    "missing_n_counts": lambda b: preflight_case(b, rewritten(b.canonical(), lambda a: a.obs.pop("n_counts")),
                                                 "obs['n_counts'] is missing"),
    "no_overlap_with_vocabulary": lambda b: preflight_case(
        b, b.canonical(genes=[f"ENSG{98_000_000_000 + i:011d}" for i in range(N_GENES)]), "only 0 of 150 genes"),
    "one_class": lambda b: preflight_case(b, b.canonical(obs=b.obs(cell_type="alpha")), "only one class",
                                          column="cell_type"),
    "class_smaller_than_folds": lambda b: preflight_case(
        b, b.canonical(obs=b.obs(cell_type=["rare"] * 2 + ["alpha"] * (N_CELLS - 2))), "rare (2 cells)",
        column="cell_type"),
    "one_donor_grouped_split": lambda b: preflight_case(
        b, b.canonical(obs=b.obs(donor="d1")), "1 groups for 3 grouped folds", column="donor",
        experiment={**CELL_EXPERIMENT, "split": "grouped", "group_column": "donor"}),
    "labels_with_gaps": lambda b: preflight_case(b, b.canonical(obs=b.obs(cell_type=[None] + ["alpha", "beta"] * 29
                                                                          + ["alpha"])),
                                                 "1 cells have no value", column="cell_type"),
    "missing_token_dictionary": lambda b: preflight_case(b, b.canonical(), "file not found",
                                                         tokens=b.inputs / "absent_tokens.tsv",
                                                         names=str(b.inputs / "absent_tokens.tsv")),
    "gene_class_too_small": lambda b: preflight_case(
        b, b.canonical(), "fewer than 4 genes", names=str(b.inputs / "gene_labels.tsv"),
        experiment={"task": "gene_classification", "n_folds": N_FOLDS}, gene_labels=gene_labels_tsv(b, 20, 2)),
    "checkpoint_missing_weights": lambda b: preflight_case(
        b, b.canonical(), "no weights", names=str(b.inputs / "checkpoint"),
        checkpoint=unlinked(saved_checkpoint(b, vocab_size(b)), "model.safetensors")),
    "checkpoint_missing_config": lambda b: preflight_case(
        b, b.canonical(), "no config.json", names=str(b.inputs / "checkpoint"),
        checkpoint=unlinked(saved_checkpoint(b, vocab_size(b)), "config.json")),
    "checkpoint_vocabulary_mismatch": lambda b: preflight_case(
        b, b.canonical(), "differs from the token dictionary's 152 tokens", names=str(b.inputs / "checkpoint"),
        checkpoint=saved_checkpoint(b, 25_426)),
    "checkpoint_input_size_too_small": lambda b: preflight_case(
        b, b.canonical(), "max_position_embeddings 32 < tokenizer.model_input_size 64",
        names=str(b.inputs / "checkpoint"), checkpoint=saved_checkpoint(b, vocab_size(b), model_input_size=32)),
    # the tokenizer (rules/tokenize.smk): per-gene and per-cell problems of the encoding itself
    "duplicate_gene_ids": lambda b: tokenize_case(b, duplicated_genes(b), "occur in more than one column"),
    "cells_without_tokens_after_filtering": lambda b: tokenize_case(b, cells_without_tokens(b), "2 of 60 cells"),
    # downloads and pickles
    "tampered_download": tampered_download,
    "malicious_pickle": malicious_pickle,
}
def snapshot(folder: Path, output: Path | None = None) -> set[str]:
    """Everything under `folder`, except the folders on the way to `output` (Snakemake creates them too)."""
    on_the_way = set(output.parents) if output else set()
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path not in on_the_way}


ROOT_CAN_WRITE_ANYWHERE = pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")


@pytest.mark.parametrize("name", [pytest.param(name, marks=ROOT_CAN_WRITE_ANYWHERE)
                                  if name == "read_only_output_folder" else name for name in CASES])
def test_bad_input_is_refused_naming_input_and_fix_and_leaves_nothing(bench, name):
    case = CASES[name](bench)
    before = snapshot(bench.out, case.output)
    with pytest.raises(InputError) as caught:
        case.run()
    message = str(caught.value)
    assert case.names in message, message
    assert case.says in caught.value.problem, message
    assert "\n  fix: " in message and caught.value.fix.strip(), message
    assert case.output is None or not case.output.exists()
    assert snapshot(bench.out, case.output) == before, "the failed step left files behind"
    assert not (bench.inputs / "pwned").exists()  # the malicious pickle ran nothing


def test_at_least_25_cases_across_config_and_data():
    assert len(CASES) >= 25
    assert sum(name.startswith("config_") for name in CASES) >= 5


def test_cli_exits_2_with_the_message_and_no_output(bench, capsys):
    """The form the rules run: `python -m workflow_scripts prepare ...` exits 2, the message on stderr."""
    h5ad, output = truncated(bench), bench.out / "data" / "mine.h5ad"
    dataset = {"source": "h5ad", "path": str(h5ad), "format": "anndata", "files": {}, "options": {}}
    code = main(["prepare", "--settings", json.dumps(dataset), "--inputs", json.dumps({"h5ad": str(h5ad)}),
                 "--obs-columns", '["cell_type"]', "--output-h5ad", str(output)])
    error = capsys.readouterr().err
    assert code == 2
    assert f"ERROR (bad input) {h5ad}: not a readable h5ad" in error and "fix:" in error
    assert snapshot(bench.out, output) == set()


@pytest.mark.slow
def test_workflow_stops_at_the_preflight_before_any_training(workdir, bench):
    """A user's dataset whose label column has one class: Snakemake stops at its preflight report,
    and no pretraining or fine-tuning job has started."""
    h5ad = bench.user_h5ad(bench.counts(), obs=bench.obs(cell_type="alpha"))
    preset = {
        "datasets": {"mine": {"source": "h5ad", "path": str(h5ad)}},
        "experiments": {"mine_cells": {"dataset": "mine", "label_column": "cell_type", "n_folds": 2,
                                       "methods": {"geneformer": {"kind": "finetune"}}}},
        "reference": {"medians": "geneformer_v1", "token_dictionary": "geneformer_v1"},  # V1 covers its genes
    }
    (workdir / "mine.yaml").write_text(yaml.safe_dump(preset))
    result = snakemake(workdir, "results/mine_cells/summary.csv", "--cores", "2", "--configfile", "config/test.yaml",
                       "mine.yaml")
    assert result.returncode != 0
    assert "Error in rule check_experiment" in result.stderr, result.stderr[-3000:]
    log = (workdir / "logs/check_experiment/mine_cells.log").read_text()
    assert (f"results/data/mine.h5ad (from {h5ad} (datasets.mine.path)): obs['cell_type'] "
            "(experiments.mine_cells.label_column): only one class (alpha)") in log and "\n  fix: " in log
    assert "What the jobs said" in result.stderr and "only one class (alpha)" in result.stderr  # on the terminal
    assert not (workdir / "results/preflight/mine_cells.json").exists()
    assert not (workdir / "results/pretrained_model").exists()
    assert not list(workdir.glob("results/mine_cells/*/fold_*"))
    assert not (workdir / "logs/pretrain").exists() and not (workdir / "logs/finetune_fold").exists()
