"""Cardiomyocytes (Chaffin et al. 2022, as used by Geneformer): a cardiomyocyte program in every
cell, a shared failing-heart program in HCM and DCM and weaker disease-specific ones. Donors are
nested in disease with strong effects (gene-wise factors, library sizes, donor states, disease
severity), so folds that share donors between training and test score clearly higher than
donor-grouped folds.

Planted for in silico perturbation: the driver (a TF-like gene whose activity sets the
failing-heart program), a cooperating pair whose co-bound targets respond to both together far
more than to either alone, and inert controls outside every disease program.
"""

from __future__ import annotations

import numpy as np

from ...core import truths
from ...core.errors import InputError
from ..cells import (
    BACKGROUND_ACTIVITY,
    BACKGROUND_PROGRAMS_PER_CELL,
    CellPlan,
    SimulatedDataset,
    as_anndata,
    categorical,
    draw_library_sizes,
    identity_activity,
    level_names,
    sample_counts,
    split_cells,
    weak_program_activity,
)
from ..settings import SimulationSettings
from ..world import (
    World,
    assign_program_roles,
    in_expression_band,
    program_genes,
    role_names,
    stream_rng,
)

STREAM = "cardiomyocytes"
PROGRAM_ROLES = ("cardiomyocyte", "failing_heart", "HCM", "DCM")
DISEASES = ("NF", "HCM", "DCM")
DISEASE_DRIVER_LEVEL = {"NF": 0.15, "HCM": 1.0, "DCM": 1.0}  # non-failing hearts keep a little
FAILING_PROGRAM_ACTIVITY = 0.4  # at driver level 1: modest
DISEASE_SPECIFIC_ACTIVITY = 0.25
CELL_DRIVER_LOG_SD = 0.3
MAX_DRIVER_ACTIVITY = 1.6  # the driver saturates: no cell's library is swamped by its targets
DONOR_SEVERITY_LOG_SD = 0.35
DONOR_GENE_LOG_SD = 0.3
DONOR_LIBRARY_LOG_SD = 0.4
DONOR_STATE_PROGRAMS = 2  # background programs a donor's cells share (age, comorbidity, sampling)
DONOR_STATE_MAX_ACTIVITY = 0.6
DISEASE_SPECIFIC_CELL_LOG_SD = 0.25
DONOR_CELL_CONCENTRATION = 3.0  # Dirichlet: uneven cells per donor
MIN_CELLS_PER_DONOR = 5
DRIVER_LOG_FOLD_CHANGE = 2.0
PAIR_LOG_FOLD_CHANGE = 3.0
PAIR_ON_PROBABILITY = 0.5
PAIR_ACTIVITY_RANGE = (0.7, 1.3)
PAIR_SINGLE_LOG_FOLD_CHANGE = 0.2
PAIR_JOINT_LOG_FOLD_CHANGE = 1.5
N_PAIR_TARGETS = 12
N_CONTROL_GENES = 20
PLANTED_GENE_BASELINE_QUANTILES = (0.5, 0.97)  # well expressed, so they reach the top ranks


def _perturbation_gene_pool(world: World, role_programs: list[int]) -> np.ndarray:
    """Well-expressed regulatable genes outside the given programs and the dosage label genes."""
    excluded = np.concatenate(
        [world.housekeeping, world.dosage_sensitive, world.dosage_insensitive]
        + [world.programs[index].genes for index in role_programs]
    )
    candidates = np.setdiff1d(np.arange(world.n_genes), excluded)
    return in_expression_band(candidates, world.baseline_log_expression, PLANTED_GENE_BASELINE_QUANTILES)


def cardiomyocyte_roles(
    world: World, rng: np.random.Generator
) -> tuple[dict[str, int], np.ndarray, tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The disease programs (program of role, background programs) and planted genes (driver, pair,
    pair targets, controls), drawn first from the cardiomyocytes' stream: the corpus redraws them
    from a fresh copy of that stream to plant the same regulation."""
    program_of_role, background_programs = assign_program_roles(world, PROGRAM_ROLES, rng)
    n_planted = 3 + N_PAIR_TARGETS + N_CONTROL_GENES
    pool = _perturbation_gene_pool(world, list(program_of_role.values()))
    if len(pool) < n_planted:
        raise InputError(
            "simulation.n_genes",
            f"the cardiomyocytes need {n_planted} well-expressed genes outside their disease programs; "
            f"the world has {len(pool)}",
            "raise simulation.n_genes or lower simulation.dosage_genes.n_per_class",
        )
    planted = rng.choice(pool, size=n_planted, replace=False)
    planted_genes = (planted[0], np.sort(planted[1:3]), np.sort(planted[3 : 3 + N_PAIR_TARGETS]),
                     np.sort(planted[3 + N_PAIR_TARGETS :]))
    return program_of_role, background_programs, planted_genes


def cardiomyocyte_planted_genes(world: World, seed: int) -> np.ndarray:
    """Every gene the cardiomyocytes plant (driver, pair, pair targets, controls), redrawn from a
    fresh copy of their stream, so other datasets can keep their own planted genes apart."""
    _, _, (driver, pair, pair_targets, controls) = cardiomyocyte_roles(world, stream_rng(seed, STREAM))
    return np.concatenate([[driver], pair, pair_targets, controls])


def planted_regulation(world: World, driver: int, pair: np.ndarray, pair_targets: np.ndarray) -> np.ndarray:
    """(local program x gene) log fold changes: the driver, each pair member (and, one member on,
    its co-bound targets a little), and the pair together (its targets far more)."""
    local_effects = np.zeros((4, world.n_genes))  # driver, first of pair, second of pair, pair together
    local_effects[0, driver] = DRIVER_LOG_FOLD_CHANGE
    local_effects[1, pair[0]] = local_effects[2, pair[1]] = PAIR_LOG_FOLD_CHANGE
    local_effects[np.ix_([1, 2], pair_targets)] = PAIR_SINGLE_LOG_FOLD_CHANGE
    local_effects[3, pair_targets] = PAIR_JOINT_LOG_FOLD_CHANGE
    return local_effects


def planted_activity(driver_activity: np.ndarray, carriers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(cell x local program) activity of the planted regulation, columns as `planted_regulation`'s
    rows: the driver's, each pair member's (on in PAIR_ON_PROBABILITY of the `carriers`), and their product."""
    n_cells = len(driver_activity)
    pair_on = carriers[:, None] & (rng.random((n_cells, 2)) < PAIR_ON_PROBABILITY)
    pair_activity = pair_on * rng.uniform(*PAIR_ACTIVITY_RANGE, (n_cells, 2))
    return np.column_stack([driver_activity, pair_activity, pair_activity.prod(axis=1)])


def simulate_cardiomyocytes(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """NF, HCM and DCM cardiomyocytes: donors nested in disease with strong donor effects, a driver
    gene setting the failing-heart program, a cooperating gene pair and inert control genes."""
    n_cells = settings.cardiomyocytes.n_cells
    donors_per_disease = np.array([settings.cardiomyocytes.donors_per_disease[disease] for disease in DISEASES])
    n_donors = int(donors_per_disease.sum())
    if n_cells < MIN_CELLS_PER_DONOR * n_donors:
        raise InputError(
            "simulation.cardiomyocytes.n_cells",
            f"{n_cells} cells cannot give {n_donors} donors {MIN_CELLS_PER_DONOR} cells each",
            f"set n_cells to at least {MIN_CELLS_PER_DONOR * n_donors} or use fewer donors_per_disease",
        )
    rng = stream_rng(seed, STREAM)
    program_of_role, background_programs, (driver, pair, pair_targets, controls) = cardiomyocyte_roles(world, rng)

    donor_disease = np.repeat(np.arange(len(DISEASES)), donors_per_disease)
    donor_weights = rng.dirichlet(np.full(n_donors, DONOR_CELL_CONCENTRATION))
    donor_cells = split_cells(n_cells, donor_weights, MIN_CELLS_PER_DONOR)
    donor = rng.permutation(np.repeat(np.arange(n_donors), donor_cells))
    disease = donor_disease[donor]
    donor_severity = np.exp(rng.normal(0.0, DONOR_SEVERITY_LOG_SD, n_donors))
    driver_level = np.array([DISEASE_DRIVER_LEVEL[name] for name in DISEASES])
    driver_activity = np.minimum(
        driver_level[disease] * donor_severity[donor] * np.exp(rng.normal(0.0, CELL_DRIVER_LOG_SD, n_cells)),
        MAX_DRIVER_ACTIVITY,
    )

    n_programs = len(world.programs)
    activity = weak_program_activity(
        n_cells, background_programs, n_programs, BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    donor_state = weak_program_activity(
        n_donors, background_programs, n_programs, DONOR_STATE_PROGRAMS, DONOR_STATE_MAX_ACTIVITY, rng
    )
    activity += donor_state[donor]
    activity[:, program_of_role["cardiomyocyte"]] = identity_activity(n_cells, rng)
    activity[:, program_of_role["failing_heart"]] = FAILING_PROGRAM_ACTIVITY * driver_activity
    specific = DISEASE_SPECIFIC_ACTIVITY * donor_severity[donor] * np.exp(
        rng.normal(0.0, DISEASE_SPECIFIC_CELL_LOG_SD, n_cells)
    )
    for row, name in enumerate(DISEASES[1:], start=1):
        activity[:, program_of_role[name]] = np.where(disease == row, specific, 0.0)

    local_activity = planted_activity(driver_activity, np.ones(n_cells, dtype=bool), rng)
    local_effects = planted_regulation(world, driver, pair, pair_targets)

    donor_log_factors = rng.normal(0.0, DONOR_GENE_LOG_SD, (n_donors, world.n_genes))
    donor_median = settings.median_library_size * np.exp(rng.normal(0.0, DONOR_LIBRARY_LOG_SD, n_donors))
    library_size = draw_library_sizes(donor_median[donor], np.full(n_cells, 0.4), rng)
    plan = CellPlan(
        activity,
        ((donor_log_factors, donor),),
        library_size,
        local_activity=local_activity,
        local_effects=local_effects,
    )
    counts = sample_counts(world, plan, rng, desc="cardiomyocytes")
    donors = level_names("donor", n_donors)
    adata = as_anndata(
        counts,
        world,
        "cardiomyocytes",
        {"disease": categorical(disease, list(DISEASES)), "donor": categorical(donor, donors)},
    )
    role_name = role_names(world, program_of_role)
    truth = {
        truths.PROGRAM_OF_ROLE.key: role_name,
        truths.DISEASES.key: {
            name: {
                "donors": [donors[index] for index in np.flatnonzero(donor_disease == row)],
                "n_cells": int((disease == row).sum()),
                "driver_level": DISEASE_DRIVER_LEVEL[name],
            }
            for row, name in enumerate(DISEASES)
        },
        truths.DONORS.key: {
            name: {
                "disease": DISEASES[donor_disease[index]],
                "n_cells": int(donor_cells[index]),
                "severity": round(float(donor_severity[index]), 4),
                "median_library_size": round(float(donor_median[index]), 2),
            }
            for index, name in enumerate(donors)
        },
        truths.DRIVER.key: {
            truths.DRIVER_GENE.key: str(world.gene_ids[driver]),
            "log_fold_change": DRIVER_LOG_FOLD_CHANGE,
            truths.DRIVER_PROGRAM.key: role_name["failing_heart"],
            "program_activity_per_driver_activity": FAILING_PROGRAM_ACTIVITY,
            truths.DRIVER_TARGETS.key: program_genes(world, program_of_role["failing_heart"], activated=True),
        },
        truths.COOPERATING_PAIR.key: {
            truths.PAIR_GENES.key: world.gene_ids[pair].tolist(),
            "log_fold_change": PAIR_LOG_FOLD_CHANGE,
            "on_probability": PAIR_ON_PROBABILITY,
            truths.PAIR_TARGETS.key: world.gene_ids[pair_targets].tolist(),
            "target_log_fold_change_each_alone": PAIR_SINGLE_LOG_FOLD_CHANGE,
            "target_log_fold_change_together": 2 * PAIR_SINGLE_LOG_FOLD_CHANGE + PAIR_JOINT_LOG_FOLD_CHANGE,
            "activity_when_on": list(PAIR_ACTIVITY_RANGE),
        },
        truths.CONTROL_GENES.key: world.gene_ids[controls].tolist(),
    }
    return SimulatedDataset(adata, truth)
