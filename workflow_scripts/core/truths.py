"""Every planted truth, declared once: where a truth file holds it, what it means, how it is drawn.

The dataset builders write a truth file's entries under these keys, and its readers (the
perturbation truth table and figures, the gene label file, the tests) find them through the same
entries, so no key is spelt twice. Every top-level entry of a truth file, and of its `world`, is
registered; inside an entry, the fields that name planted genes are registered too, and the rest
record the parameters the entry was drawn with. A new truth is one `register` call here plus the
builder line that writes it; `check_record` refuses a truth file whose entries the registry does
not list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .labels import (
    BIVALENT,
    CENTRAL,
    DOSAGE_INSENSITIVE,
    DOSAGE_SENSITIVE,
    LONG_RANGE,
    LYS4_ONLY,
    NON_TARGET,
    PERIPHERAL,
    SHORT_RANGE,
    TARGET,
    UNMETHYLATED,
)

EVERY_ENTRY = "*"  # a path step over every entry of a mapping (e.g. every cell type)
_REQUIRED, _ABSENT = object(), object()  # read's default: none given; held_by's marker of a missing truth


@dataclass(frozen=True)
class Truth:
    """One registered truth. path: its keys from the top of a truth file; datasets: the datasets
    whose truth files hold it (None: every one); label: the gene label file's class for its genes."""

    path: tuple[str, ...]
    meaning: str
    drawn: str
    datasets: tuple[str, ...] | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def key(self) -> str:
        """Its key in the mapping that holds it: what a builder writes."""
        return self.path[-1]

    def held_in(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    def read(self, truth: Mapping[str, Any], default: Any = _REQUIRED) -> Any:
        """Its value in a truth file's contents (a mapping over the entries at an EVERY_ENTRY step);
        `default` where the file does not hold it (else a KeyError naming it)."""
        try:
            return _lookup(truth, self.path)
        except KeyError:
            if default is _REQUIRED:
                raise KeyError(f"the truth file holds no {self.name!r}") from None
            return default

    def held_by(self, truth: Mapping[str, Any]) -> bool:
        return self.read(truth, default=_ABSENT) is not _ABSENT


def _lookup(value: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return value
    if path[0] == EVERY_ENTRY:
        return {key: _lookup(item, path[1:]) for key, item in value.items()}
    return _lookup(value[path[0]], path[1:])


TRUTHS: dict[str, Truth] = {}  # name -> truth, in the order declared


def register(name: str, meaning: str, drawn: str, datasets: tuple[str, ...] | None = None,
             label: str | None = None) -> Truth:
    """Declare a truth under its dotted path (e.g. "driver.gene"); each is declared once."""
    if name in TRUTHS:
        raise ValueError(f"truth {name!r} is declared twice in core/truths.py")
    truth = Truth(tuple(name.split(".")), meaning, drawn, datasets, label)
    TRUTHS[name] = truth
    return truth


def truths_of(dataset: str) -> list[Truth]:
    """The truths a dataset's truth file holds."""
    return [truth for truth in TRUTHS.values() if truth.held_in(dataset)]


def check_record(dataset: str, record: Mapping[str, Any]) -> None:
    """Refuse a truth file whose top-level entries are not exactly the dataset's registered ones, or
    that lacks a registered field: the registry then describes every truth file completely."""
    expected = {truth.key for truth in truths_of(dataset) if len(truth.path) == 1}
    unknown, missing = sorted(set(record) - expected), sorted(expected - set(record))
    missing += [truth.name for truth in truths_of(dataset) if len(truth.path) > 1 and not truth.held_by(record)]
    if unknown or missing:
        raise LookupError(f"the truth file of {dataset!r} writes unregistered entries {unknown} and lacks "
                          f"registered ones {missing}: declare each in core/truths.py and write it")


CARDIOMYOCYTES, CORPUS, PANCREAS, SCIPLEX2 = ("cardiomyocytes",), ("corpus",), ("pancreas",), ("sciplex2",)
ENDOTHELIAL, STEM_CELLS, DIFFERENTIATION = ("endothelial",), ("stem_cells",), ("differentiation",)

# Every truth file: what drew it, and the shared world.
DATASET = register("dataset", "the simulated dataset's name (its key under datasets)", "not drawn: the name asked for")
SEED = register("seed", "the seed every random stream of the file derives from", "not drawn: the config's seed")
SIMULATION = register("simulation", "the simulation settings the file was drawn with (schema defaults filled)",
                      "not drawn: the config's simulation section")
WORLD = register("world", "the shared biology every dataset of one seed and settings is drawn from (the same in "
                 "each of their truth files)", "from the world's own stream (simulate/world.py)")
WORLD_SEED = register("world.seed", "the seed the world was drawn from", "not drawn: the config's seed")
WORLD_N_GENES = register("world.n_genes", "genes in the world (every dataset's var)", "not drawn: simulation.n_genes")
HOUSEKEEPING_GENES = register(
    "world.housekeeping_genes", "highly, steadily expressed genes outside every program",
    "a few percent of the genes, their baseline raised and their dispersion lowered")
DOSAGE_SENSITIVE_GENES = register(
    "world.dosage_sensitive_genes", "tightly regulated genes: the gene label file's dosage-sensitive class",
    "well-expressed genes made low-dispersion hubs of several programs", label=DOSAGE_SENSITIVE)
DOSAGE_INSENSITIVE_GENES = register(
    "world.dosage_insensitive_genes", "loosely regulated genes: the gene label file's dosage-insensitive class",
    "well-expressed genes in at most one program (weakened), made high-dispersion", label=DOSAGE_INSENSITIVE)
PROGRAMS = register(
    "world.programs", "the gene programs: name -> genes, their log fold changes and strength (mRNA share added)",
    "log-normal sizes, gamma fold changes (a few repressed), calibrated to a log-normal strength")

# Per dataset: the programs playing its roles, its donors and batches.
PROGRAM_OF_ROLE = register("program_of_role", "role (cell type, lineage, response, disease) -> the world program "
                           "playing it", "a seeded permutation of the world's programs",
                           PANCREAS + SCIPLEX2 + CARDIOMYOCYTES + ENDOTHELIAL + STEM_CELLS + DIFFERENTIATION)
DONORS = register("donors", "the donors (with the median library size, and disease and severity where drawn)",
                  "Dirichlet cell shares, log-normal library sizes and gene-wise factors",
                  CORPUS + PANCREAS + CARDIOMYOCYTES)
PROGRAM_FREQUENCY = register("program_frequency", "program -> share of corpus cells it dominates",
                             "Dirichlet over the world's programs", CORPUS)
CELL_TYPES = register("cell_types", "cell type -> cells, program activities and marker genes",
                      "the real pancreas proportions; lineage and own programs per type", PANCREAS)
MARKER_GENES = register(f"cell_types.{EVERY_ENTRY}.marker_genes", "genes most above every other type in a type's "
                        "expected profile", "not drawn: read off the types' expected profiles", PANCREAS)
BATCHES = register("batches", "technology -> median library size, its log SD and the mean ambient RNA fraction",
                   "log-normal medians, uniform log SDs and ambient fractions", PANCREAS)
P53_RESPONSE = register("p53_response", "the nutlin-3A p53 response: Hill curve and per-cell scatter",
                        "not drawn: the simulator's parameters", SCIPLEX2)
OFF_TARGET_STRESS = register("off_target_stress", "the p53-independent stress response of high doses (Hill curve)",
                             "not drawn: the simulator's parameters", SCIPLEX2)
DOSES = register("doses", "dose label -> dose, treatment, cells and the response at the median EC50",
                 "cells split evenly over simulation.sciplex2.doses", SCIPLEX2)
P53_TARGET_GENES = register("p53_target_genes", "genes the p53 response activates",
                            "the activated genes of the p53_response program", SCIPLEX2)
P53_REPRESSED_GENES = register("p53_repressed_genes", "genes the p53 response represses",
                               "the repressed genes of the p53_response program", SCIPLEX2)
CELL_CYCLE_GENES = register("cell_cycle_genes", "genes that fall as p53 arrests proliferation",
                            "the activated genes of the proliferation program", SCIPLEX2)
REPLICATES = register("replicates", "replicate well -> median library size", "log-normal around the median",
                      SCIPLEX2)
DISEASES = register("diseases", "NF, HCM, DCM -> donors, cells and driver level", "donors nested in disease",
                    CARDIOMYOCYTES)

# The cardiomyocytes' perturbation targets: what in silico perturbation should recover.
DRIVER = register("driver", "the TF-like gene whose activity sets the failing-heart program, with its parameters",
                  "one well-expressed gene outside the disease programs and the dosage genes", CARDIOMYOCYTES)
DRIVER_GENE = register("driver.gene", "the driver's Ensembl ID", "as the driver", CARDIOMYOCYTES)
DRIVER_PROGRAM = register("driver.drives_program", "the world program the driver sets (failing_heart)",
                          "the program of the failing_heart role", CARDIOMYOCYTES)
DRIVER_TARGETS = register("driver.target_genes", "the genes the driver activates",
                          "the activated genes of the failing-heart program", CARDIOMYOCYTES)
COOPERATING_PAIR = register("cooperating_pair", "two genes whose co-bound targets respond to both together far "
                            "more than to either alone, with their parameters",
                            "two genes from the driver's pool, each on in a share of the cells", CARDIOMYOCYTES)
PAIR_GENES = register("cooperating_pair.genes", "the pair's Ensembl IDs", "as the pair", CARDIOMYOCYTES)
PAIR_TARGETS = register("cooperating_pair.target_genes", "the pair's co-bound targets",
                        "genes from the driver's pool", CARDIOMYOCYTES)
CONTROL_GENES = register("control_genes", "inert controls: well expressed, in no disease program, driven by nothing "
                         "planted", "genes from the driver's pool", CARDIOMYOCYTES)

# The gene classes of the gene classification experiments beyond dosage, one dataset each
# (simulate/datasets/endothelial.py, stem_cells.py, differentiation.py say how they are planted).
NETWORK = register("network", "the endothelial regulatory network: modules of co-regulated factors, with its "
                   "parameters", "modules with standard-normal cell activities", ENDOTHELIAL)
NETWORK_MODULES = register("network.modules", "module -> its factor genes and their log fold changes",
                           "peripheral and non-target genes in one module each, central genes in several",
                           ENDOTHELIAL)
CENTRAL_GENES = register("network.central_genes", "hub factors: in several network modules",
                         "well-expressed genes, their fold change split over their modules", ENDOTHELIAL, CENTRAL)
PERIPHERAL_GENES = register("network.peripheral_genes", "leaf factors: in one network module",
                            "well-expressed genes from the central genes' band", ENDOTHELIAL, PERIPHERAL)
REGULATOR = register("activating_regulator", "a TF-like gene raising its targets with its activity, with its "
                     "parameters", "one well-expressed gene with a standard-normal cell activity", ENDOTHELIAL)
REGULATOR_GENE = register("activating_regulator.gene", "the regulator's Ensembl ID", "as the regulator",
                          ENDOTHELIAL)
REGULATOR_TARGETS = register("activating_regulator.target_genes", "genes the regulator raises",
                             "well-expressed genes from the network's band", ENDOTHELIAL, TARGET)
REGULATOR_NON_TARGETS = register("activating_regulator.non_target_genes", "genes varying as much, with one "
                                 "network module instead of the regulator", "well-expressed genes from the "
                                 "network's band", ENDOTHELIAL, NON_TARGET)
CELL_STATES = register("states", "stem cell state -> cells and the lineage program on in it",
                       "fixed shares of the cells", STEM_CELLS)
PROMOTER_CLASSES = register("promoter_classes", "genes by promoter marks (bivalent, unmethylated, H3K4me3-only), "
                            "with their parameters", "bands of well-expressed genes", STEM_CELLS)
BIVALENT_GENES = register("promoter_classes.bivalent_genes", "poised genes: repressed in every state but the "
                          "few they switch on in", "genes of a high baseline band", STEM_CELLS, BIVALENT)
BIVALENT_ON_STATES = register("promoter_classes.bivalent_on_states", "bivalent gene -> the lineage states it is "
                              "on in", "one or two lineage states per gene", STEM_CELLS)
UNMETHYLATED_GENES = register("promoter_classes.unmethylated_genes", "always-on genes: steady across states, "
                              "following the cells' growth", "genes of a lower baseline band, raised in every "
                              "cell", STEM_CELLS, UNMETHYLATED)
LYS4_ONLY_GENES = register("promoter_classes.lys4_only_genes", "active-only genes: on in every state, graded "
                           "between states", "genes of the unmethylated genes' band, raised in every cell",
                           STEM_CELLS, LYS4_ONLY)
STAGES = register("stages", "differentiation stage -> pseudotime span and cells",
                  "equal spans of a uniform pseudotime", DIFFERENTIATION)
TRANSCRIPTION_FACTORS = register("transcription_factors", "TFs pulsing along the time course and their targets, "
                                 "with the parameters", "well-expressed TFs, each with its own targets",
                                 DIFFERENTIATION)
SHORT_RANGE_TFS = register("transcription_factors.short_range_genes", "TFs whose targets follow the TF's own "
                           "activity in the same cell", "half of the TFs", DIFFERENTIATION, SHORT_RANGE)
LONG_RANGE_TFS = register("transcription_factors.long_range_genes", "TFs acting through an intermediate program: "
                          "their targets follow the TF's time course, lagged, not its cell-to-cell changes",
                          "half of the TFs", DIFFERENTIATION, LONG_RANGE)
TF_TARGETS = register("transcription_factors.target_genes", "TF -> its target genes", "disjoint draws from a "
                      "wider band", DIFFERENTIATION)
TF_PEAKS = register("transcription_factors.peak_pseudotime", "TF -> the pseudotime its activity peaks at",
                    "uniform over a range that leaves room for the lag", DIFFERENTIATION)


@dataclass(frozen=True)
class GeneLabelSet:
    """A simulated gene label file: two registered truths, one class each (named by their labels),
    and the config key that sets their size, for messages."""

    classes: tuple[Truth, Truth]
    size_key: str

    @property
    def dataset(self) -> str | None:
        """The dataset whose truth file holds the classes; None for the world's, drawn from the settings."""
        held_in = self.classes[0].datasets
        return None if held_in is None else held_in[0]


SIMULATED_LABELS = "simulated"  # gene_labels: simulated:<label set>
GENE_LABEL_SETS: dict[str, GeneLabelSet] = {
    "dosage": GeneLabelSet((DOSAGE_SENSITIVE_GENES, DOSAGE_INSENSITIVE_GENES), "simulation.dosage_genes.n_per_class"),
    "network_central_vs_peripheral": GeneLabelSet((CENTRAL_GENES, PERIPHERAL_GENES),
                                                  "simulation.endothelial.n_per_class"),
    "network_targets_vs_nontargets": GeneLabelSet((REGULATOR_TARGETS, REGULATOR_NON_TARGETS),
                                                  "simulation.endothelial.n_per_class"),
    "bivalent_vs_unmethylated": GeneLabelSet((BIVALENT_GENES, UNMETHYLATED_GENES),
                                             "simulation.stem_cells.n_per_class"),
    "bivalent_vs_lys4_only": GeneLabelSet((BIVALENT_GENES, LYS4_ONLY_GENES), "simulation.stem_cells.n_per_class"),
    "tf_range_long_vs_short": GeneLabelSet((LONG_RANGE_TFS, SHORT_RANGE_TFS),
                                           "simulation.differentiation.n_per_class"),
}


def simulated_label_set(gene_labels: Any) -> str | None:
    """The label set a gene task's `gene_labels` names as simulated:<label set> ('' if none is
    named); None when it names a file or a download."""
    if not isinstance(gene_labels, str):
        return None
    source, _, label_set = gene_labels.partition(":")
    return label_set if source == SIMULATED_LABELS else None
