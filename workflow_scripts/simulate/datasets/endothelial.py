"""Heart endothelial cells (the Geneformer paper's N1 network in endothelial cells): an endothelial
identity program in every cell, weak background programs, and a regulatory network planted on the
dataset's own stream.

The network: NETWORK_MODULES modules of co-regulated factors, each module with its own cell-to-cell
activity (standard normal, in log space, so it moves expression both ways around the baseline).
Peripheral (leaf) factors sit in one module; central (hub) factors in several, their fold change
split over them (divided by the square root of their module count), so a hub varies exactly as
much in total as a leaf. An activating regulator, one gene following its own activity, raises its
target genes with that activity; non-target genes get fold changes of the same size from one
network module instead. All five gene sets come from one band of well-expressed genes, so a gene's
own mean, dispersion and detection rate carry no planted difference: what tells the classes apart
is which genes co-vary with a gene (one module's, several modules', the regulator's). The
own-statistics baseline sees only chance differences of the drawn baselines and dispersions.
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
    draw_library_sizes,
    identity_activity,
    sample_counts,
    weak_program_activity,
)
from ..settings import SimulationSettings
from ..world import World, assign_program_roles, role_names, stream_rng
from .gene_pools import draw_gene_classes, free_genes

STREAM = "endothelial"
SIZE_KEY = "simulation.endothelial.n_per_class"
PROGRAM_ROLES = ("endothelial",)
NETWORK_MODULES = 8
HUB_MODULE_RANGE = (3, 5)  # modules a central factor joins, inclusive
FACTOR_LOG_FOLD_CHANGE_RANGE = (0.7, 1.0)  # per unit of module or regulator activity, before a hub's split
REGULATOR_LOG_FOLD_CHANGE = 1.0
PLANTED_GENE_BASELINE_QUANTILES = (0.5, 0.97)  # well expressed, so they reach the top ranks
LIBRARY_LOG_SD = 0.4


def plant_network(
    world: World, n_per_class: int, candidates: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(local program x gene) log fold changes, the NETWORK_MODULES modules then the regulator, and
    the planted genes by role (central, peripheral, regulator, targets, non_targets)."""
    central, peripheral, targets, non_targets, regulator = draw_gene_classes(
        candidates, world, PLANTED_GENE_BASELINE_QUANTILES, (n_per_class,) * 4 + (1,), SIZE_KEY, rng
    )
    effects = np.zeros((NETWORK_MODULES + 1, world.n_genes))
    loners = np.concatenate([peripheral, non_targets])
    loner_module = rng.permutation(np.arange(len(loners)) % NETWORK_MODULES)  # modules of even size
    effects[loner_module, loners] = rng.uniform(*FACTOR_LOG_FOLD_CHANGE_RANGE, len(loners))
    low, high = HUB_MODULE_RANGE
    n_modules = rng.integers(low, high + 1, n_per_class)
    join_rank = np.argsort(np.argsort(rng.random((n_per_class, NETWORK_MODULES)), axis=1), axis=1)
    hub_fold_change = rng.uniform(*FACTOR_LOG_FOLD_CHANGE_RANGE, n_per_class) / np.sqrt(n_modules)
    effects[:NETWORK_MODULES, central] = ((join_rank < n_modules[:, None]) * hub_fold_change[:, None]).T
    effects[NETWORK_MODULES, regulator] = REGULATOR_LOG_FOLD_CHANGE
    effects[NETWORK_MODULES, targets] = rng.uniform(*FACTOR_LOG_FOLD_CHANGE_RANGE, n_per_class)
    genes = {"central": central, "peripheral": peripheral, "regulator": regulator, "targets": targets,
             "non_targets": non_targets}
    return effects, genes


def simulate_endothelial(world: World, settings: SimulationSettings, seed: int) -> SimulatedDataset:
    """Endothelial cells whose planted network modules and regulator vary from cell to cell."""
    n_cells = settings.endothelial.n_cells
    rng = stream_rng(seed, STREAM)
    program_of_role, background_programs = assign_program_roles(world, PROGRAM_ROLES, rng)
    candidates = free_genes(world, seed, list(program_of_role.values()))
    local_effects, genes = plant_network(world, settings.endothelial.n_per_class, candidates, rng)

    activity = weak_program_activity(
        n_cells, background_programs, len(world.programs), BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    activity[:, program_of_role["endothelial"]] = identity_activity(n_cells, rng)
    local_activity = rng.normal(0.0, 1.0, (n_cells, NETWORK_MODULES + 1))
    library_size = draw_library_sizes(
        np.full(n_cells, settings.median_library_size), np.full(n_cells, LIBRARY_LOG_SD), rng
    )
    plan = CellPlan(activity, (), library_size, local_activity=local_activity, local_effects=local_effects)
    counts = sample_counts(world, plan, rng, desc="endothelial")
    adata = as_anndata(counts, world, "endothelial", {})

    gene_ids = world.gene_ids
    truth = {
        truths.PROGRAM_OF_ROLE.key: role_names(world, program_of_role),
        truths.NETWORK.key: {
            truths.NETWORK_MODULES.key: {
                f"module_{module + 1:02d}": {
                    "genes": gene_ids[np.flatnonzero(local_effects[module])].tolist(),
                    "log_fold_changes": np.round(local_effects[module][local_effects[module] != 0], 4).tolist(),
                }
                for module in range(NETWORK_MODULES)
            },
            truths.CENTRAL_GENES.key: gene_ids[genes["central"]].tolist(),
            truths.PERIPHERAL_GENES.key: gene_ids[genes["peripheral"]].tolist(),
            "modules_per_central_gene": list(HUB_MODULE_RANGE),
        },
        truths.REGULATOR.key: {
            truths.REGULATOR_GENE.key: str(gene_ids[genes["regulator"][0]]),
            "log_fold_change": REGULATOR_LOG_FOLD_CHANGE,
            truths.REGULATOR_TARGETS.key: gene_ids[genes["targets"]].tolist(),
            truths.REGULATOR_NON_TARGETS.key: gene_ids[genes["non_targets"]].tolist(),
            "target_log_fold_change_range": list(FACTOR_LOG_FOLD_CHANGE_RANGE),
        },
    }
    return SimulatedDataset(adata, truth)
