"""Preflight: every check on an experiment's input that can fail, run before any training starts.

Pretraining and fine-tuning depend on these reports, so bad input stops the workflow within
seconds with a message naming the input and the fix, never after an hour of training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..core.counts import check_counts_file, read_gene_ids
from ..core.dictionaries import (
    gene_vocabulary,
    load_median_dictionary,
    load_token_dictionary,
)
from ..core.errors import InputError
from ..core.folds import select_cells
from ..core.genes import labels_in_vocabulary, read_gene_labels, require_genes_per_class
from ..core.outputs import write_json
from ..core.sections import ChecksSettings, TokenizerSettings

log = logging.getLogger(__name__)


def check_labels(obs: pd.DataFrame, source: str, experiment: dict[str, Any], name: str) -> dict[str, int]:
    """Label (and group) columns exist, have no gaps, and every class can be split into the folds;
    a refusal names the config key to change (experiments.NAME.label_column, .subset, .n_folds)."""
    key = f"experiments.{name}"
    columns = [("label_column", experiment["label_column"])]
    columns += [("group_column", experiment["group_column"])] if experiment["group_column"] else []
    for setting, column in columns:
        if column not in obs.columns:
            raise InputError(f"{source}: obs['{column}'] ({key}.{setting})", "column missing",
                             f"add the column or set {key}.{setting} to one of {list(obs.columns)}")
        if obs[column].isna().any():
            raise InputError(f"{source}: obs['{column}'] ({key}.{setting})",
                             f"{int(obs[column].isna().sum())} cells have no value",
                             f"drop those cells or fill the column, or leave them out with {key}.subset")
    label = experiment["label_column"]
    counts = obs[label].astype(str).value_counts()
    if len(counts) < 2:
        raise InputError(f"{source}: obs['{label}'] ({key}.label_column)", f"only one class ({counts.index[0]})",
                         f"set {key}.label_column to a column with two or more classes, or widen {key}.subset "
                         "so that it keeps cells of two classes")
    too_small = counts[counts < experiment["n_folds"]]
    if len(too_small):
        listed = ", ".join(f"{name} ({n} cells)" for name, n in too_small.items())
        raise InputError(f"{source}: obs['{label}'] ({key}.label_column)",
                         f"classes with fewer cells than the {experiment['n_folds']} folds: {listed}",
                         f"keep only the larger classes with {key}.subset ({{{label}: [...]}}), merge classes, "
                         f"or lower {key}.n_folds")
    if experiment["split"] == "grouped":
        n_groups = obs[experiment["group_column"]].nunique()
        if n_groups < experiment["n_folds"]:
            raise InputError(f"{source}: obs['{experiment['group_column']}'] ({key}.group_column)",
                             f"{n_groups} groups for {experiment['n_folds']} grouped folds",
                             f"lower {key}.n_folds, or set {key}.split: stratified (cells of a group may then "
                             "leak across folds)")
    return {str(name): int(n) for name, n in counts.items()}


def check_vocabulary(gene_ids: np.ndarray, gene_totals: np.ndarray, source: str, tokens: dict[str, int],
                     medians: dict[str, float], checks: ChecksSettings) -> dict[str, float]:
    """Enough of the dataset's genes must be in the token dictionary with a median (else the run stops);
    the shares of its genes and of its counts that the vocabulary keeps are reported, with a warning
    when the counts kept fall below checks.min_count_share_in_vocabulary (the ranks of the cells are
    then drawn from a small part of what was measured)."""
    gene_token, _ = gene_vocabulary(gene_ids, tokens, medians, source, checks.min_genes_in_vocabulary)
    kept = gene_token >= 0
    total = float(gene_totals.sum())
    coverage = {"genes_in_vocabulary": int(kept.sum()), "gene_share_in_vocabulary": float(kept.mean()),
                "count_share_in_vocabulary": float(gene_totals[kept].sum()) / total}
    if coverage["count_share_in_vocabulary"] < checks.min_count_share_in_vocabulary:
        log.warning("%s: the token dictionary keeps %d of its %d genes (%.1f%%), holding %.1f%% of its counts "
                    "(checks.min_count_share_in_vocabulary is %.0f%%); set reference.token_dictionary and "
                    "reference.medians to dictionaries that cover these genes (geneformer_v1, or your own)",
                    source, coverage["genes_in_vocabulary"], gene_ids.size,
                    100 * coverage["gene_share_in_vocabulary"], 100 * coverage["count_share_in_vocabulary"],
                    100 * checks.min_count_share_in_vocabulary)
    return coverage


def check_gene_labels(gene_labels_tsv: str | Path, gene_ids: np.ndarray, source: str, tokens: dict[str, int],
                      n_folds: int, min_genes_per_class: int) -> dict[str, Any]:
    """A gene task's label file: readable, its genes in the token dictionary and in the dataset, and
    enough of them per class to split into the folds (how many were dropped is reported either way)."""
    minimum = max(n_folds, min_genes_per_class)
    labels = read_gene_labels(gene_labels_tsv)
    known, n_absent_from_vocabulary = labels_in_vocabulary(labels, tokens, str(gene_labels_tsv), minimum)
    in_dataset = known["ensembl_id"].isin(pd.unique(gene_ids))
    require_genes_per_class(known[in_dataset], minimum, str(gene_labels_tsv),
                            f"{int((~in_dataset).sum())} labelled genes of the vocabulary are not measured in {source}")
    return {"labelled_genes": len(labels), "absent_from_vocabulary": n_absent_from_vocabulary,
            "absent_from_dataset": int((~in_dataset).sum()),
            "class_sizes": {str(name): int(n) for name, n in known[in_dataset]["label"].value_counts().items()}}


def check_experiment(experiment_name: str, experiment: dict[str, Any], h5ad_path: str | Path,
                     token_dictionary_tsv: str | Path, medians_tsv: str | Path, tokenizer: TokenizerSettings,
                     checks: ChecksSettings, output_json: str | Path, checkpoint: str | None = None,
                     gene_labels_tsv: str | None = None, dataset_origin: str | None = None) -> None:
    """Run every preflight check of one experiment and write what was found. `dataset_origin`: what the
    user wrote for the dataset (file and config key), named in refusals beside the workflow's copy."""
    source = f"{h5ad_path} (from {dataset_origin})" if dataset_origin else str(h5ad_path)
    shape, gene_totals = check_counts_file(h5ad_path, tokenizer.chunk_size)
    tokens = load_token_dictionary(str(token_dictionary_tsv))
    gene_ids = read_gene_ids(h5ad_path)
    coverage = check_vocabulary(gene_ids, gene_totals, source, tokens, load_median_dictionary(str(medians_tsv)),
                                checks)
    if experiment["task"] == "gene_classification":
        if not gene_labels_tsv:
            raise InputError(f"experiment {experiment_name}", "is a gene task without a gene label file",
                             "pass the experiment's gene_labels file")
        found = {"gene_labels": check_gene_labels(gene_labels_tsv, gene_ids, source, tokens, experiment["n_folds"],
                                                  checks.min_genes_per_class)}
    else:
        obs = select_cells(ad.read_h5ad(h5ad_path, backed="r").obs, experiment["subset"], source)
        found = {"class_sizes": check_labels(obs, source, experiment, experiment_name)}
    if checkpoint:
        from ..core.model import (
            check_checkpoint,  # torch and transformers: 3 s of imports only this check needs
        )

        check_checkpoint(checkpoint, len(tokens), tokenizer.model_input_size)
    write_json({"experiment": experiment_name, "file": str(h5ad_path), **shape, **found, **coverage,
                "checkpoint": checkpoint}, output_json)
