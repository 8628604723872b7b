"""Embryonic stem cells (the Geneformer paper's bivalent promoter tasks): most cells pluripotent, the
rest in one of a few early lineage states (obs['state']), each state with its world program, and
three promoter classes planted on the dataset's own stream.

Bivalent (poised) genes are repressed in every cell and switch on, above their baseline, only in
the one or two lineage states they resolve to, so they are seen in few cells, together with that
state's program and its other resolved genes. Unmethylated (always-on) genes are raised in every
cell, the same in every state, and follow a growth activity they share. H3K4me3-only (active-only)
genes are raised in every cell too, but graded between states, never silenced. Bivalent genes come
from a higher baseline band than the other two, so that on average over cells the three classes sit
at similar levels; the own-statistics baseline still sees what poising means for a gene itself:
bivalent genes are detected in fewer cells and vary more (zero in most cells, high in few).
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
    identity_activity,
    largest_remainder,
    sample_counts,
    weak_program_activity,
)
from ..settings import SimulationSettings
from ..world import World, assign_program_roles, role_names, stream_rng
from .gene_pools import draw_gene_classes, free_genes

STREAM = "stem_cells"
SIZE_KEY = "simulation.stem_cells.n_per_class"
STATES = ("pluripotent", "ectoderm", "mesoderm", "endoderm")  # the first is the undifferentiated state
STATE_SHARES = np.array([0.4, 0.2, 0.2, 0.2])
PROGRAM_ROLES = ("pluripotency", "ectoderm", "mesoderm", "endoderm")  # a program per state
LINEAGE_PLURIPOTENCY_LEVEL = 0.5  # lineage cells keep part of the pluripotency program
LINEAGE_PROGRAM_ACTIVITY = 0.6
STATE_ACTIVITY_RANGE = (0.7, 1.3)  # cell-to-cell scatter of a state's planted effects
POISED_LOG_REPRESSION = 2.5  # bivalent genes below baseline outside their states
BIVALENT_ON_LOG_FOLD_CHANGE = 1.5  # above baseline where resolved
BIVALENT_ON_STATES_RANGE = (1, 2)  # lineage states a bivalent gene is on in, inclusive
ACTIVE_LOG_LIFT = 1.0  # unmethylated and H3K4me3-only genes above baseline in every cell
GROWTH_LOG_FOLD_CHANGE_RANGE = (0.3, 0.6)  # unmethylated genes, per unit of the growth activity
LYS4_STATE_LOG_SD = 0.5  # H3K4me3-only genes' graded state effects
BIVALENT_BASELINE_QUANTILES = (0.6, 0.98)
ACTIVE_BASELINE_QUANTILES = (0.3, 0.8)
LIBRARY_LOG_SD = 0.4
POISED, GROWTH, FIRST_STATE = 0, 1, 2  # local program rows: then one per state, in STATES' order


def plant_promoter_classes(
    world: World, n_per_class: int, candidates: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(local program x gene) log fold changes (poised-or-raised, growth, one row per state), the
    genes by class, and each bivalent gene's on-states as a (gene x lineage state) mask."""
    (bivalent,) = draw_gene_classes(candidates, world, BIVALENT_BASELINE_QUANTILES, (n_per_class,), SIZE_KEY, rng)
    unmethylated, lys4_only = draw_gene_classes(
        np.setdiff1d(candidates, bivalent), world, ACTIVE_BASELINE_QUANTILES, (n_per_class,) * 2, SIZE_KEY, rng
    )
    n_lineages = len(STATES) - 1
    low, high = BIVALENT_ON_STATES_RANGE
    n_on = rng.integers(low, high + 1, n_per_class)
    on_states = np.argsort(np.argsort(rng.random((n_per_class, n_lineages)), axis=1), axis=1) < n_on[:, None]
    effects = np.zeros((FIRST_STATE + len(STATES), world.n_genes))
    effects[POISED, bivalent] = -POISED_LOG_REPRESSION
    effects[POISED, np.concatenate([unmethylated, lys4_only])] = ACTIVE_LOG_LIFT
    effects[GROWTH, unmethylated] = rng.uniform(*GROWTH_LOG_FOLD_CHANGE_RANGE, n_per_class)
    effects[FIRST_STATE + 1 :, bivalent] = on_states.T * (POISED_LOG_REPRESSION + BIVALENT_ON_LOG_FOLD_CHANGE)
    effects[FIRST_STATE:, lys4_only] = rng.normal(0.0, LYS4_STATE_LOG_SD, (len(STATES), n_per_class))
    return effects, {"bivalent": bivalent, "unmethylated": unmethylated, "lys4_only": lys4_only}, on_states


def simulate_stem_cells(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """Pluripotent and early-lineage stem cells with bivalent, unmethylated and H3K4me3-only genes."""
    n_cells = settings.stem_cells.n_cells
    rng = stream_rng(seed, STREAM)
    program_of_role, background_programs = assign_program_roles(world, PROGRAM_ROLES, rng)
    candidates = free_genes(world, seed, list(program_of_role.values()))
    local_effects, genes, on_states = plant_promoter_classes(world, settings.stem_cells.n_per_class, candidates, rng)

    state = rng.permutation(np.repeat(np.arange(len(STATES)), largest_remainder(STATE_SHARES * n_cells, n_cells)))
    in_state = np.eye(len(STATES))[state]
    activity = weak_program_activity(
        n_cells, background_programs, len(world.programs), BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    pluripotency = np.where(state == 0, 1.0, LINEAGE_PLURIPOTENCY_LEVEL)
    activity[:, program_of_role["pluripotency"]] = pluripotency * identity_activity(n_cells, rng)
    for row, name in enumerate(STATES[1:], start=1):
        activity[:, program_of_role[name]] = LINEAGE_PROGRAM_ACTIVITY * in_state[:, row]
    local_activity = np.column_stack([
        np.ones(n_cells), rng.normal(0.0, 1.0, n_cells), in_state * rng.uniform(*STATE_ACTIVITY_RANGE, (n_cells, 1))
    ])
    library_size = draw_library_sizes(
        np.full(n_cells, settings.median_library_size), np.full(n_cells, LIBRARY_LOG_SD), rng
    )
    plan = CellPlan(activity, (), library_size, local_activity=local_activity, local_effects=local_effects)
    counts = sample_counts(world, plan, rng, desc="stem_cells")
    adata = as_anndata(counts, world, "stem_cells", {"state": categorical(state, list(STATES))})

    gene_ids = world.gene_ids
    role_name = role_names(world, program_of_role)
    truth = {
        truths.PROGRAM_OF_ROLE.key: role_name,
        truths.CELL_STATES.key: {
            name: {"n_cells": int((state == row).sum()), "program": role_name[PROGRAM_ROLES[row]]}
            for row, name in enumerate(STATES)
        },
        truths.PROMOTER_CLASSES.key: {
            truths.BIVALENT_GENES.key: gene_ids[genes["bivalent"]].tolist(),
            truths.BIVALENT_ON_STATES.key: {
                str(gene): [STATES[1 + lineage] for lineage in np.flatnonzero(on)]
                for gene, on in zip(gene_ids[genes["bivalent"]], on_states)
            },
            truths.UNMETHYLATED_GENES.key: gene_ids[genes["unmethylated"]].tolist(),
            truths.LYS4_ONLY_GENES.key: gene_ids[genes["lys4_only"]].tolist(),
            "poised_log_repression": POISED_LOG_REPRESSION,
            "bivalent_on_log_fold_change": BIVALENT_ON_LOG_FOLD_CHANGE,
            "active_log_lift": ACTIVE_LOG_LIFT,
            "lys4_only_state_log_sd": LYS4_STATE_LOG_SD,
        },
    }
    return SimulatedDataset(adata, truth)
