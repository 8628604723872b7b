"""The 14 scIB pancreas cell types at the real dataset's proportions: lineage programs shared by
related types make relatives hard to tell apart, each type's own program is weaker; donors,
technologies (gene-wise factors, library sizes) and ambient RNA add batch effects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...core import truths
from ...core.errors import InputError
from ..cells import (
    CellPlan,
    SimulatedDataset,
    as_anndata,
    categorical,
    draw_library_sizes,
    largest_remainder,
    level_names,
    sample_counts,
    technology_names,
    weak_program_activity,
)
from ..settings import SimulationSettings
from ..world import (
    World,
    assign_program_roles,
    expression_probabilities,
    role_names,
    stream_rng,
)

STREAM = "pancreas"
# Real scIB human pancreas cell-type counts (16,382 cells): proportions of the simulated dataset.
REFERENCE_COUNTS = {
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
LINEAGES = {
    "endocrine": ("alpha", "beta", "delta", "gamma", "epsilon"),
    "exocrine": ("acinar", "ductal"),
    "stellate": ("activated_stellate", "quiescent_stellate"),
    "immune": ("macrophage", "mast", "t_cell"),
}
LINEAGE_ACTIVITY = 1.0
# Activity of each type's own program (before marker_strength), uneven on purpose: endocrine
# subtypes and stellate states differ only weakly beyond their lineage. Tuned so that logistic
# regression on log-normalized counts reaches about 0.9 accuracy with clearly lower macro F1.
SPECIFIC_ACTIVITY = {
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
PROGRAM_ROLES = tuple(LINEAGES) + tuple(SPECIFIC_ACTIVITY)
N_MARKER_GENES = 10


def allocate_cell_type_counts(n_cells: int, min_cells_per_type: int) -> dict[str, int]:
    """Cells per type: the real pancreas proportions (largest remainder), at least min_cells_per_type each."""
    types = list(REFERENCE_COUNTS)
    if n_cells < min_cells_per_type * len(types):
        raise InputError(
            "simulation.pancreas.n_cells",
            f"{n_cells} cells cannot give {len(types)} cell types {min_cells_per_type} cells each",
            f"set n_cells to at least {min_cells_per_type * len(types)} or lower min_cells_per_type",
        )
    reference = np.array([REFERENCE_COUNTS[name] for name in types], dtype=float)
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
    counts = largest_remainder(np.where(floored, min_cells_per_type, share), n_cells)
    return dict(zip(types, counts.tolist()))


def type_program_activity(world: World, program_of_role: dict[str, int], marker_strength: float) -> np.ndarray:
    """(cell type x program) activities: lineage programs at full strength, own programs weaker."""
    types = list(REFERENCE_COUNTS)
    activity = np.zeros((len(types), len(world.programs)))
    for lineage, members in LINEAGES.items():
        activity[[types.index(member) for member in members], program_of_role[lineage]] = LINEAGE_ACTIVITY
    for row, cell_type in enumerate(types):
        activity[row, program_of_role[cell_type]] = marker_strength * SPECIFIC_ACTIVITY[cell_type]
    return activity


def marker_genes(type_profiles: np.ndarray, row: int, n_markers: int = N_MARKER_GENES) -> np.ndarray:
    """Genes most above every other type in this type's expected profile (log ratio to the runner-up)."""
    log_profiles = np.log(type_profiles)
    margin = log_profiles[row] - np.delete(log_profiles, row, axis=0).max(axis=0)
    ranked = np.argsort(-margin, kind="stable")[:n_markers]
    return ranked[margin[ranked] > 0]


def simulate_pancreas(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """The 14 scIB pancreas cell types with lineage-shared programs, donors, technologies and ambient RNA."""
    pancreas = settings.pancreas
    n_cells, n_donors, n_technologies = pancreas.n_cells, pancreas.n_donors, pancreas.n_technologies
    type_counts = allocate_cell_type_counts(n_cells, pancreas.min_cells_per_type)
    types = list(type_counts)
    rng = stream_rng(seed, STREAM)
    program_of_role, background_programs = assign_program_roles(world, PROGRAM_ROLES, rng)
    type_activity = type_program_activity(world, program_of_role, pancreas.marker_strength)

    cell_type = rng.permutation(np.repeat(np.arange(len(types)), list(type_counts.values())))
    jitter = np.clip(np.exp(rng.normal(0.0, 0.25, (n_cells, len(world.programs)))), 0.5, 1.6)
    activity = type_activity[cell_type] * jitter
    activity += weak_program_activity(n_cells, background_programs, len(world.programs), 2, 0.4, rng)

    donor = rng.choice(n_donors, size=n_cells, p=rng.dirichlet(np.full(n_donors, 5.0)))
    technology = rng.choice(n_technologies, size=n_cells, p=rng.dirichlet(np.full(n_technologies, 5.0)))
    technology_log_factors = rng.normal(0.0, 0.3, (n_technologies, world.n_genes))
    donor_log_factors = rng.normal(0.0, 0.12, (n_donors, world.n_genes))
    technology_median = settings.median_library_size * np.exp(rng.normal(0.0, 0.3, n_technologies))
    technology_log_sd = rng.uniform(0.25, 0.5, n_technologies)
    type_size_factor = np.exp(rng.normal(0.0, 0.25, len(types)))
    library_size = draw_library_sizes(
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
    donors, technologies = level_names("donor", n_donors), technology_names(n_technologies)
    adata = as_anndata(
        counts,
        world,
        "pancreas",
        {
            "cell_type": pd.Categorical(np.asarray(types)[cell_type], categories=sorted(types)),
            "donor": categorical(donor, donors),
            "batch": categorical(technology, technologies),
        },
    )
    truth = {
        truths.PROGRAM_OF_ROLE.key: role_names(world, program_of_role),
        truths.CELL_TYPES.key: {
            name: {
                "n_cells": type_counts[name],
                "program_activity": {
                    world.programs[index].name: round(float(type_activity[row, index]), 4)
                    for index in np.flatnonzero(type_activity[row])
                },
                truths.MARKER_GENES.key: world.gene_ids[marker_genes(type_profiles, row)].tolist(),
            }
            for row, name in enumerate(types)
        },
        truths.DONORS.key: donors,
        truths.BATCHES.key: {
            name: {
                "median_library_size": round(float(technology_median[index]), 2),
                "library_log_sd": round(float(technology_log_sd[index]), 4),
                "mean_ambient_fraction": round(float(technology_ambient[index]), 4),
            }
            for index, name in enumerate(technologies)
        },
    }
    return SimulatedDataset(adata, truth)
