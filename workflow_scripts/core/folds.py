"""Cross-validation folds, fixed by seed and written once per experiment so every method sees the same
split (the tasks, core/tasks.py, make them).

scikit-learn is imported where folds are assigned, not at module import: every fine-tuning job
imports this module only to read folds.tsv, and saves a second of start-up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

FOLDS_COLUMNS = ("label", "fold")  # besides the id column: cell_id, or ensembl_id for gene folds


def assign_folds(
    labels: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fold index (0..n_folds-1) at which each cell is held out; stratified by label, grouped if asked."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    placeholder = np.zeros(len(labels))
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(placeholder, labels)
    else:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(placeholder, labels, groups)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, test_index) in enumerate(splits):
        folds[test_index] = fold
    return folds


def select_cells(obs: pd.DataFrame, subset: dict[str, list], source: str) -> pd.DataFrame:
    """The experiment's cells: those whose obs values are listed in `subset` (all cells if empty)."""
    keep = np.ones(len(obs), dtype=bool)
    for column, values in subset.items():
        if column not in obs.columns:
            raise InputError(f"{source}: obs['{column}']", "subset column missing",
                             f"fix the experiment's subset or use one of {list(obs.columns)}")
        present = obs[column].astype(str)
        wanted = {str(value) for value in values}
        absent = wanted - set(present.unique())
        if absent:
            raise InputError(f"{source}: obs['{column}']", f"subset values {sorted(absent)} not in the data",
                             f"choose among {sorted(present.unique())}")
        keep &= present.isin(wanted).to_numpy()
    return obs[keep]


def read_folds(folds_tsv: str | Path, id_column: str = "cell_id") -> pd.DataFrame:
    """folds.tsv with string ids and labels, so class order is the same whatever the labels look like."""
    folds = pd.read_csv(folds_tsv, sep="\t", dtype={id_column: str, "label": str}, keep_default_na=False)
    missing_columns = [column for column in (id_column, *FOLDS_COLUMNS) if column not in folds.columns]
    if missing_columns:
        raise InputError(
            str(folds_tsv), f"lacks columns {missing_columns}", f"write folds.tsv with {id_column}, label, fold"
        )
    if (folds["label"] == "").any() or folds[id_column].duplicated().any():
        raise InputError(
            str(folds_tsv), f"has empty labels or duplicated {id_column}s", "rebuild folds.tsv from the dataset"
        )
    if not pd.api.types.is_integer_dtype(folds["fold"]):
        raise InputError(str(folds_tsv), "column fold is not integer", "write integer fold numbers 0..K-1")
    return folds


def class_order(folds: pd.DataFrame) -> list[str]:
    """The experiment's class order: sorted unique labels."""
    return sorted(folds["label"].unique())
