"""Genes a dataset may plant its gene classes on: regulatable, not already planted by the world
(dosage genes) or the cardiomyocytes, outside the dataset's own role programs, and in a band of
baseline expression, so one planted truth never overwrites another and every planted gene is
expressed enough to reach cells' top ranks."""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError
from ..world import World, in_expression_band
from .cardiomyocytes import cardiomyocyte_planted_genes


def free_genes(world: World, seed: int, role_programs: list[int]) -> np.ndarray:
    """Genes outside housekeeping, the dosage and cardiomyocyte planted genes and the role programs."""
    excluded = np.concatenate(
        [world.housekeeping, world.dosage_sensitive, world.dosage_insensitive, cardiomyocyte_planted_genes(world, seed)]
        + [world.programs[index].genes for index in role_programs]
    )
    return np.setdiff1d(np.arange(world.n_genes), excluded)


def draw_gene_classes(
    candidates: np.ndarray,
    world: World,
    quantiles: tuple[float, float],
    class_sizes: tuple[int, ...],
    size_key: str,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Disjoint classes of the given sizes (each sorted) from the candidates in a baseline band;
    refuses, naming the key that sets the sizes, when the band holds too few genes."""
    pool = in_expression_band(candidates, world.baseline_log_expression, quantiles)
    needed = sum(class_sizes)
    if needed > len(pool):
        raise InputError(
            size_key,
            f"{needed} genes are needed from a band of well-expressed free genes; this world has {len(pool)}",
            f"lower {size_key} or raise simulation.n_genes",
        )
    drawn = rng.choice(pool, size=needed, replace=False)
    bounds = np.cumsum((0, *class_sizes))
    return [np.sort(drawn[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:])]
