"""The dataset builders, one module each, registered by the name a config's datasets use.

A builder draws one dataset from the world, on its own random stream (so adding a dataset never
changes another): `(world, settings, seed) -> SimulatedDataset`, the cells and its truth file's
entries, each registered in core/truths.py. A new dataset is one module plus one entry here;
gene_pools.py keeps the genes each dataset plants apart from those planted elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from ..cells import SimulatedDataset
from ..settings import SimulationSettings
from ..world import World
from .cardiomyocytes import simulate_cardiomyocytes
from .corpus import simulate_corpus
from .differentiation import simulate_differentiation
from .endothelial import simulate_endothelial
from .pancreas import simulate_pancreas
from .sciplex2 import simulate_sciplex2
from .stem_cells import simulate_stem_cells

DatasetBuilder = Callable[[World, SimulationSettings, int], SimulatedDataset]
DATASET_BUILDERS: dict[str, DatasetBuilder] = {
    "corpus": simulate_corpus,
    "pancreas": simulate_pancreas,
    "sciplex2": simulate_sciplex2,
    "cardiomyocytes": simulate_cardiomyocytes,
    "endothelial": simulate_endothelial,
    "stem_cells": simulate_stem_cells,
    "differentiation": simulate_differentiation,
}
