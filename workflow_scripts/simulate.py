"""Seeded single-cell simulator: the embedded default data source.

One "world" is derived from the seed: genes drawn from Geneformer's V1 vocabulary, a long-tailed
baseline expression per gene, gene-wise dispersions, housekeeping genes and a set of gene programs
(gene sets with uneven log fold changes). Every dataset is drawn from that same world, so a model
pretrained on the corpus has seen the co-expression that the downstream tasks rely on.

A dataset builder turns the world into a `CellPlan` (per-cell program activities, batch offsets,
library sizes, ambient RNA); `sample_counts` draws negative-binomial (gamma-Poisson) counts from it
in fixed-size row chunks. Builders live in `DATASET_BUILDERS`, so new datasets (perturbations,
disease states) plug in without touching the count model.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from .dictionaries import SPECIAL_TOKENS, load_token_dictionary
from .errors import InputError
from .io_utils import atomic_path, write_json

VOCABULARY = "geneformer_v1_tokens"
WORLD_STREAM = "world"
# Fixed so that the random stream (and therefore the counts) never depends on memory settings.
CHUNK_CELLS = 1024

BASELINE_LOG_SD = 1.6  # spread of per-gene baseline log expression: a few very high genes, many low
HOUSEKEEPING_FRACTION = 0.03
HOUSEKEEPING_LOG_BOOST = 2.0
MIN_LIBRARY_SIZE = 700.0  # expected UMIs; real datasets drop smaller cells in quality control
MEDIAN_DISPERSION = 0.3  # negative-binomial overdispersion (variance = mean + dispersion * mean^2)
PROGRAM_MEDIAN_SIZE = 30
PROGRAM_SIZE_RANGE = (8, 120)
REPRESSED_GENE_FRACTION = 0.1
# Fraction of a cell's mRNA a fully active program adds (log-normal around the median): uneven
# program strengths, but not at the mercy of a single gene.
PROGRAM_MEDIAN_STRENGTH = 0.3
PROGRAM_STRENGTH_LOG_SD = 0.4
PROGRAM_MAX_SCALE = 20.0
MAX_LOG_FOLD_CHANGE = 4.0  # about 55-fold: no single gene may swamp a cell's library
CALIBRATION_STEPS = 50

# Real scIB human pancreas cell-type counts (16,382 cells): proportions of the simulated dataset.
PANCREAS_REFERENCE_COUNTS = {
    "alpha": 4214,
    "beta": 3354,
    "ductal": 2142,
    "acinar": 1669,
    "delta": 1055,
    "gamma": 699,
    "activated_stellate": 457,
    "endothelial": 313,
    "quiescent_stellate": 173,
    "macrophage": 79,
    "mast": 42,
    "epsilon": 32,
    "schwann": 25,
    "t_cell": 7,
}
# Lineage programs shared by related cell types: they make relatives hard to tell apart.
PANCREAS_LINEAGES = {
    "endocrine": ("alpha", "beta", "delta", "gamma", "epsilon"),
    "exocrine": ("acinar", "ductal"),
    "stellate": ("activated_stellate", "quiescent_stellate"),
    "immune": ("macrophage", "mast", "t_cell"),
}
LINEAGE_ACTIVITY = 1.0
# Activity of each type's own program (before marker_strength), uneven on purpose: endocrine
# subtypes and stellate states differ only weakly beyond their lineage. Tuned so that logistic
# regression on log-normalized counts reaches about 0.9 accuracy with clearly lower macro F1.
PANCREAS_SPECIFIC_ACTIVITY = {
    "alpha": 0.36,
    "beta": 0.36,
    "delta": 0.33,
    "gamma": 0.3,
    "epsilon": 0.4,
    "acinar": 0.45,
    "ductal": 0.4,
    "activated_stellate": 0.3,
    "quiescent_stellate": 0.26,
    "endothelial": 0.65,
    "macrophage": 0.45,
    "mast": 0.45,
    "t_cell": 0.4,
    "schwann": 0.7,
}
PANCREAS_PROGRAM_ROLES = tuple(PANCREAS_LINEAGES) + tuple(PANCREAS_SPECIFIC_ACTIVITY)
N_MARKER_GENES = 10


@dataclass(frozen=True)
class GeneProgram:
    """A co-regulated gene set: genes (indices into the world's genes), their log fold changes, and
    the fraction of a cell's mRNA the program adds when fully active (its strength)."""

    name: str
    genes: np.ndarray
    log_fold_changes: np.ndarray
    strength: float


@dataclass(frozen=True)
class World:
    """The shared biology every simulated dataset is drawn from."""

    seed: int
    gene_ids: np.ndarray
    baseline_log_expression: np.ndarray
    dispersion: np.ndarray
    housekeeping: np.ndarray
    programs: tuple[GeneProgram, ...]

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    def program_effects(self) -> np.ndarray:
        """Dense (program x gene) log fold changes, so activities map to expression by one matmul."""
        return _effects_matrix(self.n_genes, [(program.genes, program.log_fold_changes) for program in self.programs])

    def truth(self) -> dict[str, Any]:
        """What the world planted, keyed by Ensembl ID (for the truth file)."""
        return {
            "seed": self.seed,
            "n_genes": self.n_genes,
            "housekeeping_genes": self.gene_ids[self.housekeeping].tolist(),
            "programs": {
                program.name: {
                    "genes": self.gene_ids[program.genes].tolist(),
                    "log_fold_changes": np.round(program.log_fold_changes, 4).tolist(),
                    "strength": round(program.strength, 4),
                }
                for program in self.programs
            },
        }


@dataclass(frozen=True)
class CellPlan:
    """Everything that sets each cell's expected expression; `sample_counts` draws counts from it.

    gene_offsets: (per-level gene-wise log factors, per-cell level codes) pairs, e.g. technology
    and donor batch effects. ambient_profile/ambient_fraction: ambient RNA mixed into each cell.
    """

    program_activity: np.ndarray
    gene_offsets: tuple[tuple[np.ndarray, np.ndarray], ...]
    library_size: np.ndarray
    ambient_profile: np.ndarray | None = None
    ambient_fraction: np.ndarray | None = None


@dataclass(frozen=True)
class SimulatedDataset:
    adata: ad.AnnData
    truth: dict[str, Any]


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per (seed, purpose), so adding a dataset never changes another."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(stream.encode()),)))


def vocabulary_genes() -> np.ndarray:
    """Ensembl IDs of the V1 token dictionary, special tokens left out, in dictionary order."""
    tokens = load_token_dictionary(VOCABULARY)
    return np.array([token for token in tokens if token not in SPECIAL_TOKENS])


def build_world(seed: int, n_genes: int, n_programs: int) -> World:
    """Draw the genes, their baseline expression and dispersion, housekeeping genes and programs."""
    vocabulary = vocabulary_genes()
    if not 1 <= n_genes <= len(vocabulary):
        raise InputError(
            "simulation.n_genes",
            f"{n_genes} genes requested; the V1 vocabulary has {len(vocabulary)}",
            f"set simulation.n_genes between 1 and {len(vocabulary)}",
        )
    rng = stream_rng(seed, WORLD_STREAM)
    gene_ids = np.sort(rng.choice(vocabulary, size=n_genes, replace=False))
    baseline = rng.normal(0.0, BASELINE_LOG_SD, n_genes)
    n_housekeeping = max(1, round(HOUSEKEEPING_FRACTION * n_genes))
    housekeeping = np.sort(rng.choice(n_genes, size=n_housekeeping, replace=False))
    baseline[housekeeping] = np.abs(baseline[housekeeping]) + HOUSEKEEPING_LOG_BOOST
    dispersion = MEDIAN_DISPERSION * np.exp(rng.normal(0.0, 0.5, n_genes))
    dispersion[housekeeping] /= 4  # housekeeping genes vary less between cells
    regulatable = np.setdiff1d(np.arange(n_genes), housekeeping)
    drawn = [_draw_program(regulatable, rng) for _ in range(n_programs)]
    strength = PROGRAM_MEDIAN_STRENGTH * np.exp(rng.normal(0.0, PROGRAM_STRENGTH_LOG_SD, n_programs))
    return World(seed, gene_ids, baseline, dispersion, housekeeping, _calibrate_programs(baseline, drawn, strength))


def _draw_program(regulatable: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A program of log-normal size with gamma-distributed (long-tailed) fold changes, a few repressed."""
    low, high = PROGRAM_SIZE_RANGE
    size = int(np.clip(round(PROGRAM_MEDIAN_SIZE * np.exp(rng.normal(0.0, 0.5))), low, min(high, len(regulatable))))
    genes = np.sort(rng.choice(regulatable, size=size, replace=False))
    log_fold_changes = rng.gamma(2.0, 0.8, size)
    repressed = rng.random(size) < REPRESSED_GENE_FRACTION
    log_fold_changes[repressed] *= -0.5
    return genes, log_fold_changes


def _calibrate_programs(
    baseline_log_expression: np.ndarray, drawn: list[tuple[np.ndarray, np.ndarray]], strength: np.ndarray
) -> tuple[GeneProgram, ...]:
    """Scale each program's fold changes so that, fully active, it adds `strength` of the cell's mRNA.

    Without this, one high-baseline gene with a large fold change can make a program dominate the
    library, so the difficulty of every downstream task would swing wildly with the seed. Fold
    changes are capped at MAX_LOG_FOLD_CHANGE, so a program of few, rare genes may fall short of
    its target; the strength recorded is the one reached.
    """
    proportions = _softmax_rows(baseline_log_expression[None, :])[0]
    effects = _effects_matrix(len(baseline_log_expression), drawn)
    low, high = np.zeros(len(drawn)), np.full(len(drawn), PROGRAM_MAX_SCALE)
    for _ in range(CALIBRATION_STEPS):  # bisection, all programs at once: added mass grows with scale
        scale = (low + high) / 2
        added = _added_mass(proportions, effects, scale)
        too_strong = added > strength
        high = np.where(too_strong, scale, high)
        low = np.where(too_strong, low, scale)
    scale = (low + high) / 2
    reached = _added_mass(proportions, effects, scale)
    return tuple(
        GeneProgram(
            f"program_{index:02d}",
            genes,
            np.minimum(log_fold_changes * factor, MAX_LOG_FOLD_CHANGE),
            float(program_strength),
        )
        for index, ((genes, log_fold_changes), factor, program_strength) in enumerate(zip(drawn, scale, reached))
    )


def _added_mass(proportions: np.ndarray, effects: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Fraction of mRNA each program adds at full activity when its fold changes are scaled."""
    return (proportions * np.expm1(np.minimum(scale[:, None] * effects, MAX_LOG_FOLD_CHANGE))).sum(axis=1)


def _effects_matrix(n_genes: int, gene_sets: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Dense (program x gene) matrix from (gene indices, log fold changes) pairs."""
    effects = np.zeros((len(gene_sets), n_genes))
    for row, (genes, log_fold_changes) in enumerate(gene_sets):
        effects[row, genes] = log_fold_changes
    return effects


def expression_probabilities(world: World, program_activity: np.ndarray) -> np.ndarray:
    """Per-row expression proportions (rows sum to 1) for given program activities, no batch effects."""
    log_mean = world.baseline_log_expression + program_activity @ world.program_effects()
    return _softmax_rows(log_mean)


def _softmax_rows(log_mean: np.ndarray) -> np.ndarray:
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    return proportions / proportions.sum(axis=1, keepdims=True)


def sample_counts(world: World, plan: CellPlan, rng: np.random.Generator, desc: str = "simulating") -> sp.csr_matrix:
    """Negative-binomial counts (gamma-Poisson) for every planned cell, drawn in row chunks."""
    effects = world.program_effects()
    gamma_shape = 1.0 / world.dispersion
    n_cells = len(plan.library_size)
    blocks = []
    for start in tqdm(range(0, n_cells, CHUNK_CELLS), desc=desc, unit="chunk", leave=False):
        rows = slice(start, min(start + CHUNK_CELLS, n_cells))
        log_mean = world.baseline_log_expression + plan.program_activity[rows] @ effects
        for log_factors, codes in plan.gene_offsets:
            log_mean += log_factors[codes[rows]]
        proportions = _softmax_rows(log_mean)
        if plan.ambient_profile is not None:
            fraction = plan.ambient_fraction[rows, None]
            proportions = (1.0 - fraction) * proportions + fraction * plan.ambient_profile
        mean = proportions * plan.library_size[rows, None]
        rate = mean * rng.standard_gamma(gamma_shape, size=mean.shape) / gamma_shape
        blocks.append(sp.csr_matrix(rng.poisson(rate).astype(np.int32)))
    counts = sp.vstack(blocks, format="csr")
    counts.data = counts.data.astype(np.int32, copy=False)
    return counts


def _as_anndata(counts: sp.csr_matrix, world: World, name: str, obs_columns: dict[str, Any]) -> ad.AnnData:
    """AnnData in the workflow's contract: CSR int32 counts, Ensembl var index, n_counts = row sums."""
    n_cells = counts.shape[0]
    obs = pd.DataFrame(obs_columns, index=pd.Index([f"{name}_{i:05d}" for i in range(n_cells)], name="cell_id"))
    obs["n_counts"] = np.asarray(counts.sum(axis=1)).ravel().astype(np.int64)
    var = pd.DataFrame({"ensembl_id": world.gene_ids}, index=pd.Index(world.gene_ids, name="gene_id"))
    return ad.AnnData(X=counts, obs=obs, var=var)


def _categorical(values: np.ndarray, categories: list[str]) -> pd.Categorical:
    return pd.Categorical(np.asarray(categories)[values], categories=categories)


def _level_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{index + 1}" for index in range(count)]


def _technology_names(count: int) -> list[str]:
    """tech_a, tech_b, ..., tech_z, tech_aa, ... (readable batch names in any number)."""
    names = []
    for number in range(1, count + 1):
        suffix = ""
        while number:
            number, remainder = divmod(number - 1, 26)
            suffix = string.ascii_lowercase[remainder] + suffix
        names.append(f"tech_{suffix}")
    return names


def _draw_library_sizes(median: np.ndarray, log_sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-normal expected library sizes, floored as quality control would (and so no cell is empty)."""
    return np.maximum(median * np.exp(rng.normal(0.0, 1.0, len(median)) * log_sd), MIN_LIBRARY_SIZE)


def _weak_program_activity(
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


def simulate_corpus(world: World, simulation: dict[str, Any], seed: int) -> SimulatedDataset:
    """Unlabelled pretraining cells: one dominant tissue program, a few weaker ones, mild donor effects."""
    settings = simulation["corpus"]
    n_cells, n_donors = settings["n_cells"], settings["n_donors"]
    n_programs = len(world.programs)
    rng = stream_rng(seed, "corpus")
    program_frequency = rng.dirichlet(np.full(n_programs, 2.0))
    dominant = rng.choice(n_programs, size=n_cells, p=program_frequency)
    activity = _weak_program_activity(n_cells, np.arange(n_programs), n_programs, 4, 0.4, rng)
    activity[np.arange(n_cells), dominant] = rng.uniform(0.6, 1.2, n_cells)
    donor_weights = rng.dirichlet(np.full(n_donors, 5.0))
    donor = rng.choice(n_donors, size=n_cells, p=donor_weights)
    donor_log_factors = rng.normal(0.0, 0.1, (n_donors, world.n_genes))
    donor_median = simulation["median_library_size"] * np.exp(rng.normal(0.0, 0.25, n_donors))
    library_size = _draw_library_sizes(donor_median[donor], np.full(n_cells, 0.45), rng)
    plan = CellPlan(activity, ((donor_log_factors, donor),), library_size)
    counts = sample_counts(world, plan, rng, desc="corpus")
    program_names = [program.name for program in world.programs]
    donors = _level_names("donor", n_donors)
    adata = _as_anndata(
        counts,
        world,
        "corpus",
        {"program": _categorical(dominant, program_names), "donor": _categorical(donor, donors)},
    )
    truth = {
        "program_frequency": dict(zip(program_names, np.round(program_frequency, 6).tolist())),
        "donors": {name: {"median_library_size": round(float(median), 2)} for name, median in zip(donors, donor_median)},
    }
    return SimulatedDataset(adata, truth)


def allocate_cell_type_counts(n_cells: int, min_cells_per_type: int) -> dict[str, int]:
    """Cells per type: the real pancreas proportions (largest remainder), at least min_cells_per_type each."""
    types = list(PANCREAS_REFERENCE_COUNTS)
    if n_cells < min_cells_per_type * len(types):
        raise InputError(
            "simulation.pancreas.n_cells",
            f"{n_cells} cells cannot give {len(types)} cell types {min_cells_per_type} cells each",
            f"set n_cells to at least {min_cells_per_type * len(types)} or lower min_cells_per_type",
        )
    reference = np.array([PANCREAS_REFERENCE_COUNTS[name] for name in types], dtype=float)
    # Water-filling: types whose proportional share is below the floor keep the floor; the rest share
    # the remaining cells proportionally.
    floored = np.zeros(len(types), dtype=bool)
    while True:
        remaining = n_cells - min_cells_per_type * floored.sum()
        share = remaining * reference / reference[~floored].sum()
        newly_floored = ~floored & (share < min_cells_per_type)
        if not newly_floored.any():
            break
        floored |= newly_floored
    exact = np.where(floored, min_cells_per_type, share)
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_cells - counts.sum()]] += 1
    return dict(zip(types, counts.tolist()))


def pancreas_type_activity(world: World, program_of_role: dict[str, int], marker_strength: float) -> np.ndarray:
    """(cell type x program) activities: lineage programs at full strength, own programs weaker."""
    types = list(PANCREAS_REFERENCE_COUNTS)
    activity = np.zeros((len(types), len(world.programs)))
    for lineage, members in PANCREAS_LINEAGES.items():
        activity[[types.index(member) for member in members], program_of_role[lineage]] = LINEAGE_ACTIVITY
    for row, cell_type in enumerate(types):
        activity[row, program_of_role[cell_type]] = marker_strength * PANCREAS_SPECIFIC_ACTIVITY[cell_type]
    return activity


def simulate_pancreas(world: World, simulation: dict[str, Any], seed: int) -> SimulatedDataset:
    """The 14 scIB pancreas cell types with lineage-shared programs, donors, technologies and ambient RNA."""
    settings = simulation["pancreas"]
    n_cells, n_donors, n_technologies = settings["n_cells"], settings["n_donors"], settings["n_technologies"]
    if len(world.programs) < len(PANCREAS_PROGRAM_ROLES):
        raise InputError(
            "simulation.n_programs",
            f"the pancreas needs {len(PANCREAS_PROGRAM_ROLES)} programs; the world has {len(world.programs)}",
            f"set simulation.n_programs to at least {len(PANCREAS_PROGRAM_ROLES)}",
        )
    type_counts = allocate_cell_type_counts(n_cells, settings["min_cells_per_type"])
    types = list(type_counts)
    rng = stream_rng(seed, "pancreas")
    program_indices = rng.permutation(len(world.programs))
    program_of_role = dict(zip(PANCREAS_PROGRAM_ROLES, program_indices[: len(PANCREAS_PROGRAM_ROLES)].tolist()))
    background_programs = np.sort(program_indices[len(PANCREAS_PROGRAM_ROLES) :])
    type_activity = pancreas_type_activity(world, program_of_role, settings["marker_strength"])

    cell_type = rng.permutation(np.repeat(np.arange(len(types)), list(type_counts.values())))
    jitter = np.clip(np.exp(rng.normal(0.0, 0.25, (n_cells, len(world.programs)))), 0.5, 1.6)
    activity = type_activity[cell_type] * jitter
    activity += _weak_program_activity(n_cells, background_programs, len(world.programs), 2, 0.4, rng)

    donor = rng.choice(n_donors, size=n_cells, p=rng.dirichlet(np.full(n_donors, 5.0)))
    technology = rng.choice(n_technologies, size=n_cells, p=rng.dirichlet(np.full(n_technologies, 5.0)))
    technology_log_factors = rng.normal(0.0, 0.3, (n_technologies, world.n_genes))
    donor_log_factors = rng.normal(0.0, 0.12, (n_donors, world.n_genes))
    technology_median = simulation["median_library_size"] * np.exp(rng.normal(0.0, 0.3, n_technologies))
    technology_log_sd = rng.uniform(0.25, 0.5, n_technologies)
    type_size_factor = np.exp(rng.normal(0.0, 0.25, len(types)))
    library_size = _draw_library_sizes(
        technology_median[technology] * type_size_factor[cell_type], technology_log_sd[technology], rng
    )
    type_profiles = expression_probabilities(world, type_activity)
    type_share = np.array(list(type_counts.values())) / n_cells
    ambient_profile = type_share @ type_profiles
    technology_ambient = rng.uniform(0.01, 0.08, n_technologies)
    ambient_mean = technology_ambient[technology]
    ambient_fraction = rng.beta(2.0, 2.0 * (1.0 - ambient_mean) / ambient_mean)
    plan = CellPlan(
        activity,
        ((technology_log_factors, technology), (donor_log_factors, donor)),
        library_size,
        ambient_profile,
        ambient_fraction,
    )
    counts = sample_counts(world, plan, rng, desc="pancreas")
    donors, technologies = _level_names("donor", n_donors), _technology_names(n_technologies)
    adata = _as_anndata(
        counts,
        world,
        "pancreas",
        {
            "cell_type": pd.Categorical(np.asarray(types)[cell_type], categories=sorted(types)),
            "donor": _categorical(donor, donors),
            "batch": _categorical(technology, technologies),
        },
    )
    truth = {
        "program_of_role": {role: world.programs[index].name for role, index in program_of_role.items()},
        "cell_types": {
            name: {
                "n_cells": type_counts[name],
                "program_activity": {
                    world.programs[index].name: round(float(type_activity[row, index]), 4)
                    for index in np.flatnonzero(type_activity[row])
                },
                "marker_genes": world.gene_ids[marker_genes(type_profiles, row)].tolist(),
            }
            for row, name in enumerate(types)
        },
        "donors": donors,
        "batches": {
            name: {
                "median_library_size": round(float(technology_median[index]), 2),
                "library_log_sd": round(float(technology_log_sd[index]), 4),
                "mean_ambient_fraction": round(float(technology_ambient[index]), 4),
            }
            for index, name in enumerate(technologies)
        },
    }
    return SimulatedDataset(adata, truth)


def marker_genes(type_profiles: np.ndarray, row: int, n_markers: int = N_MARKER_GENES) -> np.ndarray:
    """Genes most above every other type in this type's expected profile (log ratio to the runner-up)."""
    log_profiles = np.log(type_profiles)
    margin = log_profiles[row] - np.delete(log_profiles, row, axis=0).max(axis=0)
    ranked = np.argsort(-margin, kind="stable")[:n_markers]
    return ranked[margin[ranked] > 0]


DatasetBuilder = Callable[[World, dict[str, Any], int], SimulatedDataset]
DATASET_BUILDERS: dict[str, DatasetBuilder] = {
    "corpus": simulate_corpus,
    "pancreas": simulate_pancreas,
}


def simulate_dataset(
    name: str, simulation: dict[str, Any], seed: int, output_h5ad: str | Path, output_truth: str | Path
) -> None:
    """Simulate one named dataset from the seeded world; write the h5ad and its truth JSON atomically."""
    if name not in DATASET_BUILDERS:
        raise InputError(
            f"datasets.{name}",
            f"no simulator for a dataset named '{name}'",
            f"use one of {sorted(DATASET_BUILDERS)} or give the dataset source: h5ad with a path",
        )
    world = build_world(seed, simulation["n_genes"], simulation["n_programs"])
    dataset = DATASET_BUILDERS[name](world, simulation, seed)
    truth = {"dataset": name, "seed": seed, "simulation": simulation, "world": world.truth(), **dataset.truth}
    with atomic_path(output_h5ad) as temporary:
        dataset.adata.write_h5ad(temporary)
    write_json(truth, output_truth)
