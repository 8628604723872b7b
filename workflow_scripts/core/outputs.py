"""Atomic outputs and small readers shared by every stage.

Every output is written to a temporary sibling and renamed into place, so an interrupted or
failed job never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError

PROBABILITY_PREFIX = "prob:"  # predictions.tsv: one prob:<class> column per class


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (file or directory); rename it into place on success.

    A folder that cannot hold the output (read-only, or a file in its place) is refused naming the
    folder and the fix, instead of a bare PermissionError or FileExistsError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    except OSError as error:
        raise InputError(str(path.parent), f"cannot be written ({error.strerror or error})",
                         "make it a folder you may write to (a file of that name may be in the way), "
                         "or run the workflow from a writable directory") from error
    try:
        yield temporary
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary.parent, ignore_errors=True)


def write_tsv(frame: pd.DataFrame, path: str | Path, **kwargs: Any) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, sep="\t", index=False, **kwargs)


def write_json(payload: Any, path: str | Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")



def predictions_table(ids: dict[str, np.ndarray], true_labels: np.ndarray, classes: list[str],
                      probabilities: np.ndarray) -> pd.DataFrame:
    """The predictions.tsv every method writes and one scorer reads: id columns (cell_id, and
    ensembl_id for gene tasks), true_label, predicted_label (the most probable class), prob:<class>."""
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame({**ids, "true_label": true_labels, "predicted_label": names[probabilities.argmax(axis=1)]})
    probability_columns = pd.DataFrame(probabilities, columns=[f"{PROBABILITY_PREFIX}{name}" for name in classes])
    return pd.concat([table, probability_columns.set_index(table.index)], axis=1)
