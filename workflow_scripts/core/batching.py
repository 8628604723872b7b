"""Token batches with dynamic padding: cells are padded to the longest cell of their batch,
never to the model input size, and batches group cells of similar length so little is padded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InputError

if TYPE_CHECKING:  # torch and datasets load in the functions that need them: baselines and checks
    import datasets  # use RaggedTokens without paying seconds of imports
    import torch


@dataclass(frozen=True)
class RaggedTokens:
    """All cells' token ids in one flat array with row offsets (as arrow stores them)."""

    values: np.ndarray  # int64 token ids, every cell back to back
    offsets: np.ndarray  # int64, len = n_cells + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def subset(self, rows: np.ndarray) -> "RaggedTokens":
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return RaggedTokens(self.values[_gather_index(self.offsets[rows], lengths)], offsets)

    def padded(self, rows: np.ndarray, pad_id: int = 0) -> tuple["torch.Tensor", "torch.Tensor"]:
        """input_ids and attention_mask for `rows`, padded to the longest of them."""
        import torch

        lengths = self.lengths[rows]
        width = int(lengths.max())
        mask = np.arange(width)[None, :] < lengths[:, None]
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        input_ids[mask] = self.values[_gather_index(self.offsets[rows], lengths)]
        return torch.from_numpy(input_ids), torch.from_numpy(mask.astype(np.int64))


def _gather_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions of the listed rows' tokens, row after row (vectorized)."""
    row_of_token = np.repeat(np.arange(len(lengths)), lengths)
    first_of_row = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return starts[row_of_token] + np.arange(int(lengths.sum())) - first_of_row[row_of_token]


def load_tokenized(path: str | Path) -> tuple[RaggedTokens, "datasets.Dataset"]:
    """Read a tokenized `datasets` directory; token ids come back as one ragged array."""
    import datasets

    dataset = datasets.load_from_disk(str(path))
    column = dataset.data.column("input_ids").combine_chunks()
    if isinstance(column, pa.ChunkedArray):  # combine_chunks on an empty table
        column = pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], pa.list_(pa.int32()))
    offsets = column.offsets.to_numpy().astype(np.int64)
    values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)
    ragged = RaggedTokens(values[offsets[0]:offsets[-1]], offsets - offsets[0])
    return ragged, dataset


def dataset_rows(dataset_cell_ids, wanted_cell_ids, source: str, fix: str) -> np.ndarray:
    """Rows of the tokenized dataset holding `wanted_cell_ids`, in their order; a cell the dataset
    lacks stops the job (`source`: the file that names the cells; `fix`: what to do)."""
    row_of_cell = pd.Series(np.arange(len(dataset_cell_ids)), index=pd.Index(dataset_cell_ids))
    wanted = pd.Index(wanted_cell_ids)
    missing = ~wanted.isin(row_of_cell.index)
    if missing.any():
        raise InputError(source, f"{int(missing.sum())} of its cells are not in the tokenized dataset", fix)
    return row_of_cell.loc[wanted].to_numpy()


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           megabatch_factor: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length cells (the Hugging Face `group_by_length` idea).

    Cells are shuffled, cut into mega-batches of `megabatch_factor` batches, sorted by length
    inside each, cut into batches, and the batch order shuffled again.
    """
    order = rng.permutation(len(lengths))
    megabatch = batch_size * megabatch_factor
    batches: list[np.ndarray] = []
    for start in range(0, len(order), megabatch):
        chunk = order[start:start + megabatch]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def inference_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches for prediction: sorted by length (least padding); callers scatter results back by index."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
