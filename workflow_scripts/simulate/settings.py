"""Settings of the simulator: the `simulation` section, one nested class per dataset.

The schema (core/schema.yaml) gives every default and range; these classes name the keys. The
section as parsed is also recorded in each truth file (`as_dict`), so a truth file says which
settings drew it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.settings import Settings


@dataclass(frozen=True)
class CorpusSettings(Settings):
    """`simulation.corpus`: the unlabelled pretraining cells."""

    n_cells: int
    n_donors: int
    cardiac_fraction: float


@dataclass(frozen=True)
class PancreasSettings(Settings):
    """`simulation.pancreas`: the 14 cell types, their donors and technologies."""

    n_cells: int
    n_donors: int
    n_technologies: int
    min_cells_per_type: int
    marker_strength: float


@dataclass(frozen=True)
class Sciplex2Settings(Settings):
    """`simulation.sciplex2`: A549 cells under nutlin-3A doses (µM, 0 = vehicle)."""

    n_cells: int
    doses: list[float]
    n_replicates: int


@dataclass(frozen=True)
class CardiomyocytesSettings(Settings):
    """`simulation.cardiomyocytes`: NF, HCM and DCM cells; donors_per_disease maps disease -> donors."""

    n_cells: int
    donors_per_disease: dict[str, int]


@dataclass(frozen=True)
class EndothelialSettings(Settings):
    """`simulation.endothelial`: heart endothelial cells; n_per_class genes in each network class."""

    n_cells: int
    n_per_class: int


@dataclass(frozen=True)
class StemCellsSettings(Settings):
    """`simulation.stem_cells`: embryonic stem cells in early lineage states; n_per_class genes per promoter class."""

    n_cells: int
    n_per_class: int


@dataclass(frozen=True)
class DifferentiationSettings(Settings):
    """`simulation.differentiation`: an iPSC-to-cardiomyocyte time course; n_per_class TFs per range."""

    n_cells: int
    n_per_class: int


@dataclass(frozen=True)
class DosageGenesSettings(Settings):
    """`simulation.dosage_genes`: planted dosage-sensitive and -insensitive genes per class (0 = none)."""

    n_per_class: int


@dataclass(frozen=True)
class SimulationSettings(Settings):
    """`simulation`: the shared world (genes, programs, library size) and each dataset's settings."""

    n_genes: int
    n_programs: int
    median_library_size: float
    corpus: CorpusSettings
    pancreas: PancreasSettings
    sciplex2: Sciplex2Settings
    cardiomyocytes: CardiomyocytesSettings
    endothelial: EndothelialSettings
    stem_cells: StemCellsSettings
    differentiation: DifferentiationSettings
    dosage_genes: DosageGenesSettings
