"""The fold maker: one experiment's cross-validation folds, written once so that every method sees
the same split; how they are made is the experiment's task's (core/tasks.py)."""

from __future__ import annotations

from pathlib import Path

from ..core.tasks import ExperimentSettings, FoldInputs, task_named


def make_folds(experiment: ExperimentSettings, seed: int, output_folds_tsv: str | Path,
               h5ad_path: str | Path | None = None, gene_labels_tsv: str | Path | None = None,
               tokenized_dir: str | Path | None = None, token_dictionary_tsv: str | Path | None = None,
               min_genes_per_class: int | None = None, output_cells_tsv: str | Path | None = None) -> None:
    """Write folds.tsv (and, for gene tasks, cells.tsv). Cell tasks read the h5ad; gene tasks the gene
    labels, the tokenized dataset, the token dictionary and checks.min_genes_per_class."""
    inputs = FoldInputs(h5ad_path=h5ad_path, gene_labels_tsv=gene_labels_tsv, tokenized_dir=tokenized_dir,
                        token_dictionary_tsv=token_dictionary_tsv, min_genes_per_class=min_genes_per_class,
                        output_cells_tsv=output_cells_tsv)
    task_named(experiment.task).make_folds(experiment, seed, inputs, output_folds_tsv)
