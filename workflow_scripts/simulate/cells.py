"""The count model and the cell-level draws every dataset builder shares.

A builder turns the world into a `CellPlan` (per-cell program activities, donor and batch offsets,
library sizes, ambient RNA, regulation of its own); `sample_counts` draws negative-binomial
(gamma-Poisson) counts from it in fixed-size row chunks, and `as_anndata` puts them in the
workflow's file contract.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from .world import World, softmax_rows

# Fixed so that the random stream (and therefore the counts) never depends on memory settings.
CHUNK_CELLS = 1024
MIN_LIBRARY_SIZE = 700.0  # expected UMIs; real datasets drop smaller cells in quality control
IDENTITY_ACTIVITY_LOG_SD = 0.15  # a cell-identity program (cell line, cardiomyocyte) is on in every cell
IDENTITY_ACTIVITY_RANGE = (0.7, 1.2)  # above 1 a calibrated program quickly swamps the library
BACKGROUND_PROGRAMS_PER_CELL = 2  # weak programs per cell, as in the pancreas
BACKGROUND_ACTIVITY = 0.4


@dataclass(frozen=True)
class CellPlan:
    """Everything that sets each cell's expected expression; `sample_counts` draws counts from it.

    gene_offsets: (per-level gene-wise log factors, per-cell level codes) pairs, e.g. technology
    and donor batch effects. ambient_profile/ambient_fraction: ambient RNA mixed into each cell.
    local_activity/local_effects: (cell x local program) activities and (local program x gene) log
    fold changes of regulation one dataset adds to the world's (e.g. a driver gene and its targets).
    """

    program_activity: np.ndarray
    gene_offsets: tuple[tuple[np.ndarray, np.ndarray], ...]
    library_size: np.ndarray
    ambient_profile: np.ndarray | None = None
    ambient_fraction: np.ndarray | None = None
    local_activity: np.ndarray | None = None
    local_effects: np.ndarray | None = None


@dataclass(frozen=True)
class SimulatedDataset:
    """A builder's result: the cells, and its truth file's entries (keys from core/truths.py)."""

    adata: ad.AnnData
    truth: dict[str, Any]


def sample_counts(world: World, plan: CellPlan, rng: np.random.Generator, desc: str = "simulating") -> sp.csr_matrix:
    """Negative-binomial counts (gamma-Poisson) for every planned cell, drawn in row chunks."""
    effects = world.program_effects()
    gamma_shape = 1.0 / world.dispersion
    n_cells = len(plan.library_size)
    blocks = []
    for start in tqdm(range(0, n_cells, CHUNK_CELLS), desc=desc, unit="chunk", leave=False):
        rows = slice(start, min(start + CHUNK_CELLS, n_cells))
        log_mean = world.baseline_log_expression + plan.program_activity[rows] @ effects
        if plan.local_effects is not None:
            log_mean += plan.local_activity[rows] @ plan.local_effects
        for log_factors, codes in plan.gene_offsets:
            log_mean += log_factors[codes[rows]]
        proportions = softmax_rows(log_mean)
        if plan.ambient_profile is not None:
            fraction = plan.ambient_fraction[rows, None]
            proportions = (1.0 - fraction) * proportions + fraction * plan.ambient_profile
        mean = proportions * plan.library_size[rows, None]
        rate = mean * rng.standard_gamma(gamma_shape, size=mean.shape) / gamma_shape
        blocks.append(sp.csr_matrix(rng.poisson(rate).astype(np.int32)))
    counts = sp.vstack(blocks, format="csr")
    counts.data = counts.data.astype(np.int32, copy=False)
    return counts


def as_anndata(counts: sp.csr_matrix, world: World, name: str, obs_columns: dict[str, Any]) -> ad.AnnData:
    """AnnData in the workflow's contract: CSR int32 counts, Ensembl var index, n_counts = row sums."""
    n_cells = counts.shape[0]
    obs = pd.DataFrame(obs_columns, index=pd.Index([f"{name}_{i:05d}" for i in range(n_cells)], name="cell_id"))
    obs["n_counts"] = np.asarray(counts.sum(axis=1)).ravel().astype(np.int64)
    var = pd.DataFrame({"ensembl_id": world.gene_ids}, index=pd.Index(world.gene_ids, name="gene_id"))
    return ad.AnnData(X=counts, obs=obs, var=var)


def categorical(values: np.ndarray, categories: list[str]) -> pd.Categorical:
    return pd.Categorical(np.asarray(categories)[values], categories=categories)


def level_names(prefix: str, count: int) -> list[str]:
    """donor_1, donor_2, ...: names of a batch level's values."""
    return [f"{prefix}_{index + 1}" for index in range(count)]


def technology_names(count: int) -> list[str]:
    """tech_a, tech_b, ..., tech_z, tech_aa, ... (readable batch names in any number)."""
    names = []
    for number in range(1, count + 1):
        suffix = ""
        while number:
            number, remainder = divmod(number - 1, 26)
            suffix = string.ascii_lowercase[remainder] + suffix
        names.append(f"tech_{suffix}")
    return names


def draw_library_sizes(median: np.ndarray, log_sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-normal expected library sizes, floored as quality control would (and so no cell is empty)."""
    return np.maximum(median * np.exp(rng.normal(0.0, 1.0, len(median)) * log_sd), MIN_LIBRARY_SIZE)


def weak_program_activity(
    n_cells: int, candidates: np.ndarray, n_programs: int, per_cell: int, high: float, rng: np.random.Generator
) -> np.ndarray:
    """Each cell gets `per_cell` distinct programs from `candidates` at weak uniform(0, high) activity."""
    activity = np.zeros((n_cells, n_programs))
    per_cell = min(per_cell, len(candidates))
    if per_cell == 0:
        return activity
    keys = rng.random((n_cells, len(candidates)))
    chosen = candidates[np.argpartition(keys, per_cell - 1, axis=1)[:, :per_cell]]
    np.put_along_axis(activity, chosen, rng.uniform(0.0, high, chosen.shape), axis=1)
    return activity


def identity_activity(n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Activity of the program every cell of the dataset shares, scattered a little around 1."""
    return np.clip(np.exp(rng.normal(0.0, IDENTITY_ACTIVITY_LOG_SD, n_cells)), *IDENTITY_ACTIVITY_RANGE)


def largest_remainder(exact: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total` from exact shares: floors, then one more for the largest remainders."""
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def split_cells(n_cells: int, weights: np.ndarray, floor: int) -> np.ndarray:
    """Cells per group: `floor` each, the rest in proportion to weights."""
    return largest_remainder(floor + (n_cells - floor * len(weights)) * weights / weights.sum(), n_cells)
