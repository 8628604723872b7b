"""sci-Plex2: A549 cells (one cell-line program) under nutlin-3A, which stabilizes p53: a p53
response program rises along a saturating Hill curve and proliferation falls. Each cell's EC50 and
maximal response scatter log-normally, so neighbouring doses overlap: the thesis reached ~96%
accuracy on vehicle vs 25 µM but ~70% over four doses, with 10/25/50 µM near saturation. High
doses add a p53-independent stress response of their own (off-target effects), which sets the
top dose a little apart from the saturated p53 response."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...core import truths
from ...core.errors import InputError
from ...core.labels import dose_label
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
from ..world import World, assign_program_roles, program_genes, role_names, stream_rng

STREAM = "sciplex2"
PROGRAM_ROLES = ("cell_line", "p53_response", "proliferation", "off_target_stress")
NUTLIN_EC50_UM = 5.0
NUTLIN_HILL_COEFFICIENT = 1.2
CELL_EC50_LOG_SD = 0.3
CELL_MAX_RESPONSE_LOG_SD = 0.15
NON_RESPONDER_FRACTION = 0.06  # cells that barely respond at any dose (a few escape in every well)
NON_RESPONDER_RESPONSE = 0.1
P53_MAX_ACTIVITY = 1.0
PROLIFERATION_RANGE = (0.3, 1.0)  # cell-cycle state before treatment
PROLIFERATION_ARREST = 0.7  # share of proliferation activity a full p53 response removes
STRESS_EC50_UM = 40.0
STRESS_HILL_COEFFICIENT = 2.0
STRESS_MAX_ACTIVITY = 0.8
REPLICATE_GENE_LOG_SD = 0.05  # replicate wells of one cell line differ little
REPLICATE_LIBRARY_LOG_SD = 0.1


def hill_response(dose: np.ndarray, ec50: np.ndarray | float, hill_coefficient: float) -> np.ndarray:
    """Saturating dose-response: the fraction of the maximal response reached at each dose (0 at dose 0)."""
    ratio = (np.asarray(dose, dtype=float) / ec50) ** hill_coefficient
    return ratio / (1.0 + ratio)


def simulate_sciplex2(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """A549 cells treated with vehicle or nutlin-3A doses: a p53 response along a Hill curve that
    arrests proliferation, off-target stress at the top doses, cells heterogeneous in sensitivity,
    a few replicate wells; cells split evenly over the doses."""
    n_cells, n_replicates = settings.sciplex2.n_cells, settings.sciplex2.n_replicates
    doses = np.sort(np.asarray(settings.sciplex2.doses, dtype=float))
    labels = [dose_label(dose) for dose in doses]
    if len(set(labels)) < len(labels) or n_cells < len(doses):
        raise InputError(
            "simulation.sciplex2",
            f"doses {settings.sciplex2.doses} give labels {labels} for {n_cells} cells",
            "give doses that differ in their first 6 significant digits and at least one cell per dose",
        )
    rng = stream_rng(seed, STREAM)
    program_of_role, background_programs = assign_program_roles(world, PROGRAM_ROLES, rng)
    cells_per_dose = split_cells(n_cells, np.ones(len(doses)), 0)
    dose_index = rng.permutation(np.repeat(np.arange(len(doses)), cells_per_dose))

    cell_ec50 = NUTLIN_EC50_UM * np.exp(rng.normal(0.0, CELL_EC50_LOG_SD, n_cells))
    non_responder = rng.random(n_cells) < NON_RESPONDER_FRACTION
    cell_max_response = np.exp(rng.normal(0.0, CELL_MAX_RESPONSE_LOG_SD, n_cells)) * np.where(
        non_responder, NON_RESPONDER_RESPONSE, 1.0
    )
    response = cell_max_response * hill_response(doses[dose_index], cell_ec50, NUTLIN_HILL_COEFFICIENT)
    activity = weak_program_activity(
        n_cells, background_programs, len(world.programs), BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    activity[:, program_of_role["cell_line"]] = identity_activity(n_cells, rng)
    activity[:, program_of_role["p53_response"]] = P53_MAX_ACTIVITY * response
    stress = hill_response(doses[dose_index], STRESS_EC50_UM, STRESS_HILL_COEFFICIENT)
    activity[:, program_of_role["off_target_stress"]] = STRESS_MAX_ACTIVITY * cell_max_response * stress
    activity[:, program_of_role["proliferation"]] = rng.uniform(*PROLIFERATION_RANGE, n_cells) * (
        1.0 - PROLIFERATION_ARREST * np.minimum(response, 1.0)
    )

    replicate = rng.choice(n_replicates, size=n_cells)
    replicate_log_factors = rng.normal(0.0, REPLICATE_GENE_LOG_SD, (n_replicates, world.n_genes))
    replicate_median = settings.median_library_size * np.exp(
        rng.normal(0.0, REPLICATE_LIBRARY_LOG_SD, n_replicates)
    )
    library_size = draw_library_sizes(replicate_median[replicate], np.full(n_cells, 0.4), rng)
    plan = CellPlan(activity, ((replicate_log_factors, replicate),), library_size)
    counts = sample_counts(world, plan, rng, desc="sciplex2")
    replicates = level_names("replicate", n_replicates)
    treatment = np.where(doses[dose_index] == 0, "vehicle", "nutlin3a")
    adata = as_anndata(
        counts,
        world,
        "sciplex2",
        {
            "dose": categorical(dose_index, labels),
            "treatment": pd.Categorical(treatment, categories=sorted(set(treatment))),
            "replicate": categorical(replicate, replicates),
        },
    )
    p53_program, proliferation_program = program_of_role["p53_response"], program_of_role["proliferation"]
    truth = {
        truths.PROGRAM_OF_ROLE.key: role_names(world, program_of_role),
        truths.P53_RESPONSE.key: {
            "ec50_um": NUTLIN_EC50_UM,
            "hill_coefficient": NUTLIN_HILL_COEFFICIENT,
            "max_activity": P53_MAX_ACTIVITY,
            "cell_ec50_log_sd": CELL_EC50_LOG_SD,
            "cell_max_response_log_sd": CELL_MAX_RESPONSE_LOG_SD,
            "non_responder_fraction": NON_RESPONDER_FRACTION,
            "proliferation_arrest": PROLIFERATION_ARREST,
        },
        truths.OFF_TARGET_STRESS.key: {
            "ec50_um": STRESS_EC50_UM,
            "hill_coefficient": STRESS_HILL_COEFFICIENT,
            "max_activity": STRESS_MAX_ACTIVITY,
        },
        truths.DOSES.key: {
            label: {
                "dose_um": float(dose),
                "treatment": "vehicle" if dose == 0 else "nutlin3a",
                "n_cells": int(count),
                "response_at_median_ec50": round(
                    float(hill_response(dose, NUTLIN_EC50_UM, NUTLIN_HILL_COEFFICIENT)), 4
                ),
            }
            for label, dose, count in zip(labels, doses, cells_per_dose)
        },
        truths.P53_TARGET_GENES.key: program_genes(world, p53_program, activated=True),
        truths.P53_REPRESSED_GENES.key: program_genes(world, p53_program, activated=False),
        truths.CELL_CYCLE_GENES.key: program_genes(world, proliferation_program, activated=True),
        truths.REPLICATES.key: {
            name: {"median_library_size": round(float(median), 2)}
            for name, median in zip(replicates, replicate_median)
        },
    }
    return SimulatedDataset(adata, truth)
