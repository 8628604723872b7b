"""An iPSC-to-cardiomyocyte time course (the Geneformer paper's long- vs short-range TFs): cells
along a uniform pseudotime (obs['pseudotime'], binned into obs['stage']), the pluripotency program
fading, a mesoderm program passing and the cardiomyocyte program rising, and transcription factors
planted on the dataset's own stream.

Every TF pulses along the time course (a Gaussian bump at its own peak) with cell-to-cell scatter.
A short-range TF raises its targets directly: they follow its activity in the same cell, scatter
included. A long-range TF acts through an intermediate program that lags it by LONG_RANGE_LAG along
the pseudotime and scatters on its own: its targets follow the TF's time course late, not its
cell-to-cell changes. Both classes come from one band of well-expressed genes with the same pulses,
so a TF's own mean, dispersion and detection rate carry no planted difference; what tells them
apart is whether the TF's targets co-vary with it within a time point. The own-statistics baseline
sees only chance differences of the drawn baselines, peaks and dispersions.
"""

from __future__ import annotations

import numpy as np

from ...core import truths
from ..cells import (
    BACKGROUND_ACTIVITY,
    BACKGROUND_PROGRAMS_PER_CELL,
    CellPlan,
    SimulatedDataset,
    as_anndata,
    categorical,
    draw_library_sizes,
    sample_counts,
    weak_program_activity,
)
from ..settings import SimulationSettings
from ..world import World, assign_program_roles, role_names, stream_rng
from .gene_pools import draw_gene_classes, free_genes

STREAM = "differentiation"
SIZE_KEY = "simulation.differentiation.n_per_class"
PROGRAM_ROLES = ("pluripotency", "mesoderm", "cardiomyocyte")
STAGES = ("ipsc", "mesoderm", "cardiac_progenitor", "cardiomyocyte")  # equal spans of pseudotime
MESODERM_PEAK = 0.4
PULSE_WIDTH = 0.15  # SD of every pulse along the pseudotime, the mesoderm program's and each TF's
TF_PEAK_RANGE = (0.1, 0.65)  # leaves room for a long-range TF's lagged targets before the end
LONG_RANGE_LAG = 0.25
TF_CELL_LOG_SD = 0.5  # cell-to-cell scatter of a TF's (or an intermediate program's) activity
MAX_TF_ACTIVITY = 1.6  # saturates: no cell's library is swamped by one TF's targets
TF_LOG_FOLD_CHANGE = 2.0
TARGET_LOG_FOLD_CHANGE_RANGE = (1.0, 1.5)
N_TARGETS_PER_TF = 3
TF_BASELINE_QUANTILES = (0.5, 0.97)
TARGET_BASELINE_QUANTILES = (0.3, 1.0)
LIBRARY_LOG_SD = 0.4


def pulse(pseudotime: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Gaussian bumps of PULSE_WIDTH: (cells) x (peaks) from a pseudotime column and a peak row."""
    return np.exp(-0.5 * ((pseudotime[:, None] - peak[None, :]) / PULSE_WIDTH) ** 2)


def plant_transcription_factors(
    world: World, n_per_class: int, candidates: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(local program x gene) log fold changes (one row per TF, then one per TF's intermediate
    program), the TFs by class, each TF's targets (TF x N_TARGETS_PER_TF) and its peak pseudotime.
    TFs are ordered short-range first."""
    short_range, long_range = draw_gene_classes(
        candidates, world, TF_BASELINE_QUANTILES, (n_per_class,) * 2, SIZE_KEY, rng
    )
    factors = np.concatenate([short_range, long_range])
    n_factors = len(factors)
    (targets,) = draw_gene_classes(np.setdiff1d(candidates, factors), world, TARGET_BASELINE_QUANTILES,
                                   (n_factors * N_TARGETS_PER_TF,), SIZE_KEY, rng)
    targets = rng.permutation(targets).reshape(n_factors, N_TARGETS_PER_TF)
    peak = rng.uniform(*TF_PEAK_RANGE, n_factors)
    effects = np.zeros((2 * n_factors, world.n_genes))
    effects[np.arange(n_factors), factors] = TF_LOG_FOLD_CHANGE
    is_long = np.arange(n_factors) >= n_per_class
    target_row = np.where(is_long, n_factors, 0) + np.arange(n_factors)  # long-range: the intermediate's row
    effects[np.repeat(target_row, N_TARGETS_PER_TF), targets.ravel()] = rng.uniform(
        *TARGET_LOG_FOLD_CHANGE_RANGE, targets.size)
    return effects, {"short_range": short_range, "long_range": long_range}, targets, peak


def simulate_differentiation(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """Cells along an iPSC-to-cardiomyocyte pseudotime with short- and long-range TFs."""
    n_cells = settings.differentiation.n_cells
    rng = stream_rng(seed, STREAM)
    program_of_role, background_programs = assign_program_roles(world, PROGRAM_ROLES, rng)
    candidates = free_genes(world, seed, list(program_of_role.values()))
    local_effects, factors, targets, peak = plant_transcription_factors(
        world, settings.differentiation.n_per_class, candidates, rng
    )

    pseudotime = rng.uniform(0.0, 1.0, n_cells)
    stage = np.minimum((pseudotime * len(STAGES)).astype(int), len(STAGES) - 1)
    activity = weak_program_activity(
        n_cells, background_programs, len(world.programs), BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    activity[:, program_of_role["pluripotency"]] = 1.0 - pseudotime
    activity[:, program_of_role["mesoderm"]] = pulse(pseudotime, np.array([MESODERM_PEAK]))[:, 0]
    activity[:, program_of_role["cardiomyocyte"]] = pseudotime
    time_course = np.hstack([pulse(pseudotime, peak), pulse(pseudotime, peak + LONG_RANGE_LAG)])
    scatter = np.exp(rng.normal(0.0, TF_CELL_LOG_SD, time_course.shape))
    local_activity = np.minimum(time_course * scatter, MAX_TF_ACTIVITY)
    library_size = draw_library_sizes(
        np.full(n_cells, settings.median_library_size), np.full(n_cells, LIBRARY_LOG_SD), rng
    )
    plan = CellPlan(activity, (), library_size, local_activity=local_activity, local_effects=local_effects)
    counts = sample_counts(world, plan, rng, desc="differentiation")
    adata = as_anndata(counts, world, "differentiation",
                       {"pseudotime": pseudotime, "stage": categorical(stage, list(STAGES))})

    gene_ids = world.gene_ids
    all_factors = gene_ids[np.concatenate([factors["short_range"], factors["long_range"]])]
    truth = {
        truths.PROGRAM_OF_ROLE.key: role_names(world, program_of_role),
        truths.STAGES.key: {
            name: {"pseudotime": [row / len(STAGES), (row + 1) / len(STAGES)], "n_cells": int((stage == row).sum())}
            for row, name in enumerate(STAGES)
        },
        truths.TRANSCRIPTION_FACTORS.key: {
            truths.SHORT_RANGE_TFS.key: gene_ids[factors["short_range"]].tolist(),
            truths.LONG_RANGE_TFS.key: gene_ids[factors["long_range"]].tolist(),
            truths.TF_TARGETS.key: {str(factor): gene_ids[np.sort(genes)].tolist()
                                    for factor, genes in zip(all_factors, targets)},
            truths.TF_PEAKS.key: {str(factor): round(float(time), 4) for factor, time in zip(all_factors, peak)},
            "long_range_lag": LONG_RANGE_LAG,
            "pulse_width": PULSE_WIDTH,
            "tf_log_fold_change": TF_LOG_FOLD_CHANGE,
            "target_log_fold_change_range": list(TARGET_LOG_FOLD_CHANGE_RANGE),
        },
    }
    return SimulatedDataset(adata, truth)
