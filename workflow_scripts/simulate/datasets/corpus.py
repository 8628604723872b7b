"""The unlabelled pretraining corpus: one dominant tissue program per cell, a few weaker ones, mild
donor effects; optionally a share of cardiomyocyte-like cells carrying the cardiomyocytes' planted
regulation, so that pretraining can learn the links in silico deletion looks for (the corpus of
Geneformer held real heart cells)."""

from __future__ import annotations

import numpy as np

from ...core import truths
from ..cells import (
    CellPlan,
    SimulatedDataset,
    as_anndata,
    categorical,
    draw_library_sizes,
    level_names,
    sample_counts,
    weak_program_activity,
)
from ..settings import SimulationSettings
from ..world import World, stream_rng
from . import cardiomyocytes

STREAM = "corpus"
CARDIAC_STREAM = "corpus_cardiac"


def simulate_corpus(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """Unlabelled pretraining cells: one dominant tissue program, a few weaker ones, mild donor effects."""
    n_cells, n_donors = settings.corpus.n_cells, settings.corpus.n_donors
    n_programs = len(world.programs)
    rng = stream_rng(seed, STREAM)
    program_frequency = rng.dirichlet(np.full(n_programs, 2.0))
    dominant = rng.choice(n_programs, size=n_cells, p=program_frequency)
    activity = weak_program_activity(n_cells, np.arange(n_programs), n_programs, 4, 0.4, rng)
    activity[np.arange(n_cells), dominant] = rng.uniform(0.6, 1.2, n_cells)
    donor_weights = rng.dirichlet(np.full(n_donors, 5.0))
    donor = rng.choice(n_donors, size=n_cells, p=donor_weights)
    donor_log_factors = rng.normal(0.0, 0.1, (n_donors, world.n_genes))
    donor_median = settings.median_library_size * np.exp(rng.normal(0.0, 0.25, n_donors))
    library_size = draw_library_sizes(donor_median[donor], np.full(n_cells, 0.45), rng)
    local_activity, local_effects = _cardiac_cells(world, seed, settings.corpus.cardiac_fraction, activity)
    plan = CellPlan(activity, ((donor_log_factors, donor),), library_size, local_activity=local_activity,
                    local_effects=local_effects)
    counts = sample_counts(world, plan, rng, desc="corpus")
    program_names = [program.name for program in world.programs]
    donors = level_names("donor", n_donors)
    adata = as_anndata(
        counts,
        world,
        "corpus",
        {"program": categorical(dominant, program_names), "donor": categorical(donor, donors)},
    )
    truth = {
        truths.PROGRAM_FREQUENCY.key: dict(zip(program_names, np.round(program_frequency, 6).tolist())),
        truths.DONORS.key: {
            name: {"median_library_size": round(float(median), 2)} for name, median in zip(donors, donor_median)
        },
    }
    return SimulatedDataset(adata, truth)


def _cardiac_cells(
    world: World, seed: int, fraction: float, activity: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Cardiomyocyte-like corpus cells (a `fraction`, their own stream): the cardiomyocytes' driver
    sets the failing-heart program and the pair its co-bound targets, as there; the planted genes
    are redrawn from a fresh copy of the cardiomyocytes' stream, so they are the same genes.
    Adds to `activity` in place; returns the local (activity, effects) of the plan, None when off."""
    if fraction == 0:
        return None, None
    program_of_role, _, (driver, pair, pair_targets, _) = cardiomyocytes.cardiomyocyte_roles(
        world, stream_rng(seed, cardiomyocytes.STREAM))
    rng = stream_rng(seed, CARDIAC_STREAM)
    n_cells = activity.shape[0]
    cardiac = rng.random(n_cells) < fraction
    driver_activity = cardiac * rng.uniform(0.0, cardiomyocytes.MAX_DRIVER_ACTIVITY, n_cells)
    activity[:, program_of_role["failing_heart"]] += cardiomyocytes.FAILING_PROGRAM_ACTIVITY * driver_activity
    return (cardiomyocytes.planted_activity(driver_activity, cardiac, rng),
            cardiomyocytes.planted_regulation(world, driver, pair, pair_targets))
