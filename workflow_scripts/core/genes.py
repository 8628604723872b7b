"""Gene classification's pieces (the task itself is core/tasks.py::GeneTask): the gene label file,
held-out cells, and the token labels BertForTokenClassification trains on.

As in Geneformer's gene classifier, folds split the labelled genes (stratified by class), never
the cells: a gene's label is seen in training or in testing, not both. Beyond the reference, the
cells are split too: training uses only `train` cells and scoring only `test` cells, so no
held-out gene is scored in a cell the model was trained on. Labels sit on the positions of the
fold's genes in each cell's rank value encoding (the class id) and -100 everywhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .batching import RaggedTokens, dataset_rows
from .errors import InputError

IGNORE_INDEX = -100  # positions without a label, skipped by the loss (Hugging Face's convention)
GENE_LABEL_COLUMNS = ("ensembl_id", "label")
CELL_ROLES = ("train", "test")
TRAINING_SUBSET_STREAM = 1  # n_training_cells' draws, apart from split_cells' (seeded by the seed alone)


def read_gene_labels(path: str | Path) -> pd.DataFrame:
    """The gene label file: a TSV with ensembl_id and label, each gene once, at least two classes."""
    try:
        labels = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(str(path), f"cannot be read as a TSV ({error})",
                         "give a tab-separated file with columns ensembl_id and label") from error
    missing = [column for column in GENE_LABEL_COLUMNS if column not in labels.columns]
    if missing:
        raise InputError(str(path), f"lacks columns {missing} (has {list(labels.columns)})",
                         "write a header line 'ensembl_id<TAB>label'")
    labels = labels[list(GENE_LABEL_COLUMNS)]
    if (labels == "").any(axis=None):
        raise InputError(str(path), "has empty gene ids or labels", "fill or drop those rows")
    duplicated = labels["ensembl_id"][labels["ensembl_id"].duplicated()].unique()
    if len(duplicated):
        raise InputError(str(path), f"lists {len(duplicated)} genes more than once, e.g. {list(duplicated[:3])}",
                         "give each gene one label")
    if labels["label"].nunique() < 2:
        raise InputError(str(path), f"has {labels['label'].nunique()} class(es)", "label genes of at least two classes")
    return labels


def require_genes_per_class(labels: pd.DataFrame, minimum: int, source: str, dropped: str) -> None:
    """Stop when a class keeps fewer than `minimum` genes; `dropped` says what was removed and why."""
    counts = labels["label"].value_counts().reindex(sorted(labels["label"].unique()), fill_value=0)
    too_few = counts[counts < minimum]
    if len(too_few):
        listed = ", ".join(f"{name} ({n} genes)" for name, n in too_few.items())
        raise InputError(source, f"{dropped}; classes left with fewer than {minimum} genes: {listed}",
                         "label more genes of those classes, or lower n_folds / checks.min_genes_per_class")


def labels_in_vocabulary(labels: pd.DataFrame, tokens: dict[str, int], source: str, minimum: int
                         ) -> tuple[pd.DataFrame, int]:
    """Keep labelled genes the token dictionary knows; returns them and how many were dropped."""
    known = labels["ensembl_id"].isin(list(tokens))
    n_absent = int((~known).sum())
    require_genes_per_class(labels[known], minimum, source,
                            f"{n_absent} of {len(labels)} labelled genes are not in the token dictionary")
    return labels[known].reset_index(drop=True), n_absent


def split_cells(n_cells_available: int, n_cells: int | None, test_fraction: float, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train rows, test rows): up to `n_cells` cells, `test_fraction` of them held out."""
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(n_cells_available)[: n_cells or n_cells_available]
    n_test = int(round(test_fraction * len(chosen)))
    if n_test < 1 or n_test == len(chosen):
        raise InputError("test_cell_fraction", f"leaves {n_test} of {len(chosen)} cells for testing",
                         "choose a fraction that leaves cells for both training and testing")
    return np.sort(chosen[n_test:]), np.sort(chosen[:n_test])


def training_subset(train_rows: np.ndarray, n_training_cells: int | None, seed: int) -> np.ndarray:
    """The first `n_training_cells` of one seeded order of the training rows (sorted; all when None or
    when fewer are available), so a smaller subset is always part of a larger one."""
    if n_training_cells is None or n_training_cells >= len(train_rows):
        return train_rows
    order = np.random.default_rng((seed, TRAINING_SUBSET_STREAM)).permutation(len(train_rows))
    return np.sort(train_rows[order[:n_training_cells]])


def cells_holding_each_token(tokens: RaggedTokens, rows: np.ndarray, vocab_size: int) -> np.ndarray:
    """Per token id, the number of the given cells whose encoding holds it (a gene occurs once per cell)."""
    return np.bincount(tokens.subset(rows).values, minlength=vocab_size)


def read_cell_roles(cells_tsv: str | Path, cell_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of the tokenized dataset per role (train, test), from cells.tsv."""
    cells = pd.read_csv(cells_tsv, sep="\t", dtype=str, keep_default_na=False)
    if list(cells.columns) != ["cell_id", "role"] or not cells["role"].isin(CELL_ROLES).all():
        raise InputError(str(cells_tsv), "is not a cells.tsv (cell_id, role in train/test)", "rebuild the gene folds")
    rows = dataset_rows(cell_ids, cells["cell_id"], str(cells_tsv), "rebuild the gene folds")
    return {role: np.sort(rows[(cells["role"] == role).to_numpy()]) for role in CELL_ROLES}


def token_label_lookup(token_ids: np.ndarray, label_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """Label per token id: the class id for the given genes' tokens, IGNORE_INDEX for every other token
    (padding and special tokens included), so labels of a batch are one gather: lookup[input_ids]."""
    lookup = np.full(vocab_size, IGNORE_INDEX, dtype=np.int64)
    lookup[token_ids] = label_ids
    return lookup


def labelled_positions(tokens: RaggedTokens, rows: np.ndarray, lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, token id) of every labelled token in the given cells, cell by cell in `rows` order."""
    subset = tokens.subset(rows)
    row_of_token = np.repeat(rows, subset.lengths)
    labelled = lookup[subset.values] != IGNORE_INDEX
    return row_of_token[labelled], subset.values[labelled]


def rows_with_labels(tokens: RaggedTokens, rows: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """The cells among `rows` holding at least one labelled token (the others carry no loss)."""
    labelled_rows, _ = labelled_positions(tokens, rows, lookup)
    return rows[np.isin(rows, labelled_rows)]
