"""Classification tasks: what an experiment labels (schema `experiments.<name>.task`), one class each.

A task says how its folds are made, which rows of the tokenized dataset train and test in a fold and
with which targets, what the baselines fit and score, and the rows of its predictions table. The
fold maker (preflight/folds.py), fine-tuning (finetune/) and the baselines (baselines/) take all of it
from `task_named(experiment.task)`, so a new kind of task is one new class here. Fine-tuning's torch
side is chosen by the task's `head`: this module is also imported by jobs without torch.

Cell classification labels cells by an obs column; its folds split the cells. Gene classification
(dosage sensitivity) labels genes by a file; its folds split the genes and cells.tsv splits the cells
(see genes.py): a gene's label is trained on in `train` cells or scored in `test` cells, never both.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .batching import RaggedTokens, dataset_rows, load_tokenized
from .errors import InputError
from .folds import assign_folds, class_order, read_folds, select_cells
from .genes import (
    cells_holding_each_token,
    labelled_positions,
    labels_in_vocabulary,
    read_cell_roles,
    read_gene_labels,
    require_genes_per_class,
    rows_with_labels,
    split_cells,
    token_label_lookup,
    training_subset,
)
from .outputs import predictions_table, write_tsv
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentSettings(Settings):
    """An experiment's data and folds (schema `experiments.<name>`, as the schema fills it), without its
    methods and reference_method: adding a method must not remake the folds, and so rerun every job."""

    dataset: str
    task: str
    label_column: str | None
    gene_labels: str | dict[str, Any] | None
    n_cells: int | None
    test_cell_fraction: float
    min_cells_per_gene: int
    n_training_cells: int | None
    group_column: str | None
    split: str
    n_folds: int
    subset: dict[str, list]

    @classmethod
    def section_of(cls, entry: dict[str, Any]) -> dict[str, Any]:
        """The keys of an experiment's config entry that this class holds (what a rule passes)."""
        return {field.name: entry[field.name] for field in dataclasses.fields(cls)}


@dataclass(frozen=True)
class FoldInputs:
    """The files folds are made from; each task reads some of them (`required` names a missing one)."""

    h5ad_path: str | Path | None = None
    gene_labels_tsv: str | Path | None = None
    tokenized_dir: str | Path | None = None
    token_dictionary_tsv: str | Path | None = None
    min_genes_per_class: int | None = None
    output_cells_tsv: str | Path | None = None

    def required(self, name: str, task: str) -> Any:
        return required_input(getattr(self, name), f"--{name.replace('_', '-')}", task)


def required_input(value: Any, flag: str, task: str) -> Any:
    """An input one task needs and others do not (so the command takes it as an optional flag)."""
    if value is None:
        raise InputError(flag, f"is needed by a {task} task", f"pass {flag} (the rules give it for {task})")
    return value


@dataclass(frozen=True)
class Fold:
    """One fold as fine-tuning sees it: the tokenized cells, the rows trained and tested on, and their
    targets (a class id per row for the sequence head, per token id for the token head)."""

    tokens: RaggedTokens
    cell_ids: np.ndarray
    classes: list[str]
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_targets: np.ndarray
    test_targets: np.ndarray

    def training_labels(self) -> np.ndarray:
        """The class ids the loss is computed on (class weights count them)."""
        raise NotImplementedError

    def upsampled(self, fraction: float, seed: int) -> Fold:
        raise InputError("finetuning.upsample", "resamples cells; it is not defined for this task",
                         "set upsample: false (focal_alpha: balanced weights rare classes)")

    def predictions(self, rows: np.ndarray, token_ids: np.ndarray | None, probabilities: np.ndarray) -> pd.DataFrame:
        """predictions.tsv from the probabilities the head gave at (row, token id) of the test rows."""
        raise NotImplementedError


@dataclass(frozen=True)
class CellFold(Fold):
    """Targets: the class id of each row of the tokenized dataset (-1 for cells outside the experiment)."""

    def training_labels(self) -> np.ndarray:
        return self.train_targets[self.train_rows]

    def upsampled(self, fraction: float, seed: int) -> CellFold:
        """Resampled training cells (with replacement) added until each class has `fraction` x the largest."""
        labels = self.train_targets[self.train_rows]
        counts = np.bincount(labels)
        target = int(np.ceil(fraction * counts.max()))
        rng = np.random.default_rng(seed)
        extra = [rng.choice(self.train_rows[labels == label], target - count)
                 for label, count in enumerate(counts) if 0 < count < target]
        return dataclasses.replace(self, train_rows=np.concatenate([self.train_rows, *extra]))

    def predictions(self, rows: np.ndarray, token_ids: np.ndarray | None, probabilities: np.ndarray) -> pd.DataFrame:
        true_labels = np.asarray(self.classes, dtype=object)[self.test_targets[rows]]
        return predictions_table({"cell_id": self.cell_ids[rows]}, true_labels, self.classes, probabilities)


@dataclass(frozen=True)
class GeneFold(Fold):
    """Targets: the class id of each token id (the fold's training or held-out genes), IGNORE_INDEX elsewhere."""

    gene_of_token: pd.Series

    def training_labels(self) -> np.ndarray:
        _, token_ids = labelled_positions(self.tokens, self.train_rows, self.train_targets)
        return self.train_targets[token_ids]

    def predictions(self, rows: np.ndarray, token_ids: np.ndarray | None, probabilities: np.ndarray) -> pd.DataFrame:
        ids = {"cell_id": self.cell_ids[rows], "ensembl_id": self.gene_of_token.loc[token_ids].to_numpy()}
        true_labels = np.asarray(self.classes, dtype=object)[self.test_targets[token_ids]]
        return predictions_table(ids, true_labels, self.classes, probabilities)


@dataclass(frozen=True)
class BaselineFold:
    """One fold as a baseline sees it: features and labels of the training and held-out examples (cells
    or genes), and what each predictions.tsv row is: its ids, true label and held-out example."""

    train_features: Any
    train_labels: np.ndarray
    test_features: Any
    classes: list[str]
    prediction_ids: dict[str, np.ndarray]
    prediction_labels: np.ndarray
    prediction_examples: np.ndarray  # index into the held-out examples, per predictions.tsv row

    def predictions(self, probabilities: np.ndarray) -> pd.DataFrame:
        """predictions.tsv from the held-out examples' probabilities (on `classes`)."""
        return predictions_table(self.prediction_ids, self.prediction_labels, self.classes,
                                 probabilities[self.prediction_examples])


class Task:
    """What a kind of task decides; one subclass per value of the schema's `task`."""

    name: ClassVar[str]
    head: ClassVar[str]  # the classifier fine-tuning trains: "sequence" (one label per cell) or "token"
    baseline_kinds: ClassVar[tuple[str, ...]]  # method kinds (schema) that are baselines of this task

    def make_folds(self, experiment: ExperimentSettings, seed: int, inputs: FoldInputs,
                   output_folds_tsv: str | Path) -> None:
        raise NotImplementedError

    def fold(self, tokenized_dir: str | Path, folds_tsv: str | Path, fold: int, cells_tsv: str | Path | None) -> Fold:
        raise NotImplementedError

    def baseline_fold(self, h5ad_path: str | Path, folds_tsv: str | Path, fold: int,
                      tokenized_dir: str | Path | None, cells_tsv: str | Path | None) -> BaselineFold:
        raise NotImplementedError


class CellTask(Task):
    """Cells labelled by an obs column; folds.tsv: cell_id, label, [group,] fold."""

    name = "cell_classification"
    head = "sequence"
    baseline_kinds = ("pca_rf", "logreg_hvg")

    def make_folds(self, experiment: ExperimentSettings, seed: int, inputs: FoldInputs,
                   output_folds_tsv: str | Path) -> None:
        import anndata as ad

        h5ad_path = inputs.required("h5ad_path", self.name)
        group_column = experiment.group_column if experiment.split == "grouped" else None
        obs = select_cells(ad.read_h5ad(h5ad_path, backed="r").obs, experiment.subset, str(h5ad_path))
        labels = obs[experiment.label_column].astype(str).to_numpy()
        groups = obs[group_column].astype(str).to_numpy() if group_column else None
        if groups is not None and len(np.unique(groups)) < experiment.n_folds:
            raise InputError(
                f"{h5ad_path}: obs['{group_column}']",
                f"{len(np.unique(groups))} groups for {experiment.n_folds} grouped folds",
                "lower n_folds or use split: stratified",
            )
        folds = assign_folds(labels, experiment.n_folds, seed, groups)
        table = pd.DataFrame({"cell_id": obs.index.astype(str), "label": labels, "fold": folds})
        if groups is not None:
            table.insert(2, "group", groups)
        write_tsv(table, output_folds_tsv)

    def fold(self, tokenized_dir: str | Path, folds_tsv: str | Path, fold: int, cells_tsv: str | Path | None
             ) -> CellFold:
        """Train on the cells of every fold but `fold`, test on `fold`'s."""
        tokens, dataset = load_tokenized(tokenized_dir)
        folds = read_folds(folds_tsv)
        classes = class_order(folds)
        rows = dataset_rows(dataset["cell_id"], folds["cell_id"], str(folds_tsv),
                            f"re-run tokenization of {tokenized_dir} for this dataset")
        labels_by_row = np.full(len(tokens), -1, dtype=np.int64)
        labels_by_row[rows] = folds["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()
        in_fold = folds["fold"].to_numpy() == fold
        return CellFold(tokens, np.asarray(dataset["cell_id"]), classes, rows[~in_fold], rows[in_fold],
                        labels_by_row, labels_by_row)

    def baseline_fold(self, h5ad_path: str | Path, folds_tsv: str | Path, fold: int,
                      tokenized_dir: str | Path | None, cells_tsv: str | Path | None) -> BaselineFold:
        """Log-normalized expression of the training and held-out cells, matched to folds.tsv by cell id."""
        import anndata as ad
        import scipy.sparse as sp

        from .counts import log_normalize

        folds = read_folds(folds_tsv)
        if fold not in set(folds["fold"]):
            raise InputError(str(folds_tsv), f"has no fold {fold}", f"use one of {sorted(set(folds['fold']))}")
        if folds.loc[folds["fold"] != fold, "label"].nunique() < 2:
            raise InputError(
                str(folds_tsv), f"the cells outside fold {fold} hold fewer than two labels", "rebuild the folds"
            )
        adata = ad.read_h5ad(h5ad_path)
        if "n_counts" not in adata.obs.columns:
            raise InputError(
                str(h5ad_path), "lacks obs['n_counts']", "prepare the dataset so obs['n_counts'] holds row sums"
            )
        rows = adata.obs_names.get_indexer(folds["cell_id"])
        if (rows < 0).any():
            absent = folds["cell_id"][rows < 0]
            raise InputError(
                str(folds_tsv),
                f"{len(absent)} cell ids are not in {h5ad_path}, e.g. {list(absent[:3])}",
                "rebuild folds.tsv from this dataset",
            )
        n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)[rows]
        if not (n_counts > 0).all():
            raise InputError(str(h5ad_path), "has cells with n_counts <= 0", "filter out empty cells before splitting")
        expression = log_normalize(sp.csr_matrix(adata.X)[rows], n_counts)
        held_out = (folds["fold"] == fold).to_numpy()
        labels = folds["label"].to_numpy()
        return BaselineFold(
            train_features=expression[~held_out],
            train_labels=labels[~held_out],
            test_features=expression[held_out],
            classes=class_order(folds),
            prediction_ids={"cell_id": folds["cell_id"].to_numpy()[held_out]},
            prediction_labels=labels[held_out],
            prediction_examples=np.arange(int(held_out.sum())),
        )


class GeneTask(Task):
    """Genes labelled by a file; folds.tsv: ensembl_id, token_id, label, fold, cell counts; and
    cells.tsv: cell_id, role (train or test)."""

    name = "gene_classification"
    head = "token"
    baseline_kinds = ("gene_pca_rf", "gene_stats_logreg")

    def make_folds(self, experiment: ExperimentSettings, seed: int, inputs: FoldInputs,
                   output_folds_tsv: str | Path) -> None:
        """A labelled gene is kept only if it occurs in at least `min_cells_per_gene` training cells and
        as many test cells: a gene absent from the encodings can be neither learned nor scored. With
        `n_training_cells`, cells.tsv names a seeded subset of the training cells (n_train_cells counts
        that subset), while which genes are kept and their folds follow all training cells."""
        from .dictionaries import load_token_dictionary

        gene_labels_tsv = inputs.required("gene_labels_tsv", self.name)
        tokenized_dir = inputs.required("tokenized_dir", self.name)
        n_folds, min_cells_per_gene = experiment.n_folds, experiment.min_cells_per_gene
        tokens_by_gene = load_token_dictionary(str(inputs.required("token_dictionary_tsv", self.name)))
        minimum = max(n_folds, inputs.required("min_genes_per_class", self.name))
        labels, _ = labels_in_vocabulary(read_gene_labels(gene_labels_tsv), tokens_by_gene, str(gene_labels_tsv),
                                         minimum)
        tokens, dataset = load_tokenized(tokenized_dir)
        train_rows, test_rows = split_cells(len(tokens), experiment.n_cells, experiment.test_cell_fraction, seed)
        vocab_size = max(tokens_by_gene.values()) + 1
        labels["token_id"] = labels["ensembl_id"].map(tokens_by_gene).astype(np.int64)
        labels["n_train_cells"] = cells_holding_each_token(tokens, train_rows, vocab_size)[labels["token_id"]]
        labels["n_test_cells"] = cells_holding_each_token(tokens, test_rows, vocab_size)[labels["token_id"]]
        present = (labels["n_train_cells"] >= min_cells_per_gene) & (labels["n_test_cells"] >= min_cells_per_gene)
        train_rows = training_subset(train_rows, experiment.n_training_cells, seed)
        labels["n_train_cells"] = cells_holding_each_token(tokens, train_rows, vocab_size)[labels["token_id"]]
        require_genes_per_class(
            labels[present], minimum, str(gene_labels_tsv),
            f"{int((~present).sum())} of {len(labels)} labelled genes occur in fewer than {min_cells_per_gene} "
            f"training or test cells of {tokenized_dir}",
        )
        genes = labels[present].sort_values("ensembl_id", ignore_index=True)
        genes["fold"] = assign_folds(genes["label"].to_numpy(), n_folds, seed)
        write_tsv(genes[["ensembl_id", "token_id", "label", "fold", "n_train_cells", "n_test_cells"]],
                  output_folds_tsv)
        cell_ids = np.asarray(dataset["cell_id"])
        cells = pd.DataFrame({"cell_id": np.concatenate([cell_ids[train_rows], cell_ids[test_rows]]),
                              "role": ["train"] * len(train_rows) + ["test"] * len(test_rows)})
        write_tsv(cells, inputs.required("output_cells_tsv", self.name))

    @staticmethod
    def _genes(folds_tsv: str | Path, fold: int) -> tuple[pd.DataFrame, list[str], np.ndarray, np.ndarray, np.ndarray]:
        """folds.tsv's genes, the class order, and per gene its class id, token id and whether it trains."""
        genes = read_folds(folds_tsv, id_column="ensembl_id")
        classes = class_order(genes)
        label_ids = genes["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()
        return genes, classes, label_ids, genes["token_id"].to_numpy(dtype=np.int64), genes["fold"].to_numpy() != fold

    def fold(self, tokenized_dir: str | Path, folds_tsv: str | Path, fold: int, cells_tsv: str | Path | None
             ) -> GeneFold:
        """Labels on the training genes' tokens in the training cells; the held-out genes' tokens in the
        test cells are scored. Cells holding none of their role's labelled genes are left out."""
        cells_tsv = required_input(cells_tsv, "--cells-tsv", self.name)
        tokens, dataset = load_tokenized(tokenized_dir)
        genes, classes, label_ids, token_ids, in_training = self._genes(folds_tsv, fold)
        vocab_size = int(max(tokens.values.max(initial=0), token_ids.max(initial=0))) + 1
        train_lookup = token_label_lookup(token_ids[in_training], label_ids[in_training], vocab_size)
        test_lookup = token_label_lookup(token_ids[~in_training], label_ids[~in_training], vocab_size)
        cell_ids = np.asarray(dataset["cell_id"])
        roles = read_cell_roles(cells_tsv, cell_ids)
        train_rows = rows_with_labels(tokens, roles["train"], train_lookup)
        test_rows = rows_with_labels(tokens, roles["test"], test_lookup)
        log.info("fold %d: %d training genes in %d training cells, %d held-out genes in %d test cells", fold,
                 int(in_training.sum()), len(train_rows), int((~in_training).sum()), len(test_rows))
        return GeneFold(tokens, cell_ids, classes, train_rows, test_rows, train_lookup, test_lookup,
                        gene_of_token=pd.Series(genes["ensembl_id"].to_numpy(), index=token_ids))

    def baseline_fold(self, h5ad_path: str | Path, folds_tsv: str | Path, fold: int,
                      tokenized_dir: str | Path | None, cells_tsv: str | Path | None) -> BaselineFold:
        """Each gene described by its log-normalized expression over the training cells; a held-out
        gene's prediction is written at each of its tokens in the test cells."""
        import anndata as ad
        import scipy.sparse as sp

        from .counts import gene_ids_of, log_normalize

        tokenized_dir = required_input(tokenized_dir, "--tokenized-dir", self.name)
        cells_tsv = required_input(cells_tsv, "--cells-tsv", self.name)
        genes, classes, label_ids, token_ids, in_training = self._genes(folds_tsv, fold)
        tokens, dataset = load_tokenized(tokenized_dir)
        cell_ids = np.asarray(dataset["cell_id"])
        roles = read_cell_roles(cells_tsv, cell_ids)
        adata = ad.read_h5ad(h5ad_path)
        columns = pd.Index(gene_ids_of(adata.var)).get_indexer(genes["ensembl_id"])
        if (columns < 0).any():
            raise InputError(str(folds_tsv), f"{int((columns < 0).sum())} genes are not in {h5ad_path}",
                             "rebuild the gene folds")
        cell_rows = adata.obs_names.get_indexer(cell_ids[roles["train"]])
        counts = sp.csr_matrix(adata.X)[cell_rows]
        profiles = log_normalize(counts, adata.obs["n_counts"].to_numpy(dtype=np.float64)[cell_rows])[:, columns]
        profiles = np.asarray(profiles.T.todense())
        labels = genes["label"].to_numpy()
        held_out_tokens = token_ids[~in_training]
        vocab_size = int(max(tokens.values.max(initial=0), held_out_tokens.max(initial=0))) + 1
        rows, position_tokens = labelled_positions(
            tokens, roles["test"], token_label_lookup(held_out_tokens, label_ids[~in_training], vocab_size))
        gene_index = pd.Series(np.arange(len(held_out_tokens)), index=held_out_tokens).loc[position_tokens].to_numpy()
        return BaselineFold(
            train_features=profiles[in_training],
            train_labels=labels[in_training],
            test_features=profiles[~in_training],
            classes=classes,
            prediction_ids={"cell_id": cell_ids[rows],
                            "ensembl_id": genes["ensembl_id"].to_numpy()[~in_training][gene_index]},
            prediction_labels=labels[~in_training][gene_index],
            prediction_examples=gene_index,
        )


TASKS: dict[str, Task] = {task.name: task for task in (CellTask(), GeneTask())}


def task_named(name: str) -> Task:
    """The task of an experiment's `task` key."""
    if name not in TASKS:
        raise InputError("--task", f"'{name}' is not a task", f"use one of {sorted(TASKS)}")
    return TASKS[name]
