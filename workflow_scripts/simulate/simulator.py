"""Seeded single-cell simulator: the embedded default data source.

One "world" is derived from the seed: genes drawn from Geneformer's V1 vocabulary, a long-tailed
baseline expression per gene, gene-wise dispersions, housekeeping genes and a set of gene programs
(gene sets with uneven log fold changes). Every dataset is drawn from that same world, so a model
pretrained on the corpus has seen the co-expression that the downstream tasks rely on.

A dataset builder turns the world into a `CellPlan` (per-cell program activities, batch offsets,
library sizes, ambient RNA); `sample_counts` draws negative-binomial (gamma-Poisson) counts from it
in fixed-size row chunks. Builders live in `DATASET_BUILDERS`, so new datasets (perturbations,
disease states) plug in without touching the count model.

Datasets: an unlabelled pretraining corpus, the 14-type pancreas, sci-Plex2-like A549 cells under
nutlin-3A doses, and NF/HCM/DCM cardiomyocytes with strong donor effects and planted perturbation
targets (a driver gene, a cooperating pair, inert controls). The world also plants
dosage-sensitive genes (tightly regulated hubs) and dosage-insensitive ones (loosely regulated),
so every dataset, the corpus above all, carries the difference the gene label file names.
"""

from __future__ import annotations

import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from ..core.dictionaries import SPECIAL_TOKENS, load_token_dictionary
from ..core.errors import InputError
from ..core.labels import DOSAGE_INSENSITIVE, DOSAGE_SENSITIVE, dose_label
from ..core.outputs import atomic_path, write_json, write_tsv

VOCABULARY = "geneformer_v1_tokens"
WORLD_STREAM = "world"
# Fixed so that the random stream (and therefore the counts) never depends on memory settings.
CHUNK_CELLS = 1024

BASELINE_LOG_SD = 1.6  # spread of per-gene baseline log expression: a few very high genes, many low
HOUSEKEEPING_FRACTION = 0.03
HOUSEKEEPING_LOG_BOOST = 2.0
MIN_LIBRARY_SIZE = 700.0  # expected UMIs; real datasets drop smaller cells in quality control
MEDIAN_DISPERSION = 0.3  # negative-binomial overdispersion (variance = mean + dispersion * mean^2)
PROGRAM_MEDIAN_SIZE = 30
PROGRAM_SIZE_RANGE = (8, 120)
REPRESSED_GENE_FRACTION = 0.1
# Fraction of a cell's mRNA a fully active program adds (log-normal around the median): uneven
# program strengths, but not at the mercy of a single gene.
PROGRAM_MEDIAN_STRENGTH = 0.3
PROGRAM_STRENGTH_LOG_SD = 0.4
PROGRAM_MAX_SCALE = 20.0
MAX_LOG_FOLD_CHANGE = 4.0  # about 55-fold: no single gene may swamp a cell's library
CALIBRATION_STEPS = 50

# Dosage sensitivity, planted in the world from its own stream (the other world draws stay as they
# were). Sensitive genes: hubs joined to several programs at moderate activating fold changes, with
# low dispersion. Insensitive genes: in at most one program (weakened), with high dispersion. Both
# are drawn from bands of well-expressed genes, so both show up in most cells' top ranks; the
# insensitive band sits a little higher, as programs raise the hubs' mean expression, so that
# neither class can be told apart by expression level alone.
DOSAGE_STREAM = "dosage_genes"
SENSITIVE_BASELINE_QUANTILES = (0.45, 0.9)  # bands of baseline expression among regulatable genes
INSENSITIVE_BASELINE_QUANTILES = (0.55, 0.98)
HUB_PROGRAM_RANGE = (2, 4)  # program memberships of a sensitive gene, inclusive
HUB_LOG_FOLD_CHANGE_RANGE = (0.5, 1.2)  # before calibration: moderate, below a typical member
SENSITIVE_DISPERSION_FACTOR = 0.35
INSENSITIVE_DISPERSION_FACTOR = 5.0
DOSAGE_DISPERSION_LOG_SD = 0.5  # scatter of those factors: the classes overlap, as real genes do
INSENSITIVE_FOLD_CHANGE_SHRINK = 0.3  # the one program an insensitive gene may stay in barely moves it

# Real scIB human pancreas cell-type counts (16,382 cells): proportions of the simulated dataset.
PANCREAS_REFERENCE_COUNTS = {
    "alpha": 4214,
    "beta": 3354,
    "ductal": 2142,
    "acinar": 1669,
    "delta": 1055,
    "gamma": 699,
    "activated_stellate": 457,
    "endothelial": 313,
    "quiescent_stellate": 173,
    "macrophage": 79,
    "mast": 42,
    "epsilon": 32,
    "schwann": 25,
    "t_cell": 7,
}
# Lineage programs shared by related cell types: they make relatives hard to tell apart.
PANCREAS_LINEAGES = {
    "endocrine": ("alpha", "beta", "delta", "gamma", "epsilon"),
    "exocrine": ("acinar", "ductal"),
    "stellate": ("activated_stellate", "quiescent_stellate"),
    "immune": ("macrophage", "mast", "t_cell"),
}
LINEAGE_ACTIVITY = 1.0
# Activity of each type's own program (before marker_strength), uneven on purpose: endocrine
# subtypes and stellate states differ only weakly beyond their lineage. Tuned so that logistic
# regression on log-normalized counts reaches about 0.9 accuracy with clearly lower macro F1.
PANCREAS_SPECIFIC_ACTIVITY = {
    "alpha": 0.36,
    "beta": 0.36,
    "delta": 0.33,
    "gamma": 0.3,
    "epsilon": 0.4,
    "acinar": 0.45,
    "ductal": 0.4,
    "activated_stellate": 0.3,
    "quiescent_stellate": 0.26,
    "endothelial": 0.65,
    "macrophage": 0.45,
    "mast": 0.45,
    "t_cell": 0.4,
    "schwann": 0.7,
}
PANCREAS_PROGRAM_ROLES = tuple(PANCREAS_LINEAGES) + tuple(PANCREAS_SPECIFIC_ACTIVITY)
N_MARKER_GENES = 10
IDENTITY_ACTIVITY_LOG_SD = 0.15  # a cell-identity program (cell line, cardiomyocyte) is on in every cell
IDENTITY_ACTIVITY_RANGE = (0.7, 1.2)  # above 1 a calibrated program quickly swamps the library

# sci-Plex2: A549 cells (one cell-line program) under nutlin-3A, which stabilizes p53: a p53 response
# program rises along a saturating Hill curve and proliferation falls. Each cell's EC50 and maximal
# response scatter log-normally, so neighbouring doses overlap: the thesis reached ~96% accuracy on
# vehicle vs 25 µM but ~70% over four doses, with 10/25/50 µM near saturation.
SCIPLEX2_PROGRAM_ROLES = ("cell_line", "p53_response", "proliferation", "off_target_stress")
NUTLIN_EC50_UM = 5.0
NUTLIN_HILL_COEFFICIENT = 1.2
CELL_EC50_LOG_SD = 0.3
CELL_MAX_RESPONSE_LOG_SD = 0.15
NON_RESPONDER_FRACTION = 0.06  # cells that barely respond at any dose (a few escape in every well)
NON_RESPONDER_RESPONSE = 0.1
P53_MAX_ACTIVITY = 1.0
PROLIFERATION_RANGE = (0.3, 1.0)  # cell-cycle state before treatment
PROLIFERATION_ARREST = 0.7  # share of proliferation activity a full p53 response removes
# High doses add a p53-independent stress response of their own (off-target effects): it sets the
# top dose a little apart from the saturated p53 response.
STRESS_EC50_UM = 40.0
STRESS_HILL_COEFFICIENT = 2.0
STRESS_MAX_ACTIVITY = 0.8
BACKGROUND_PROGRAMS_PER_CELL = 2  # weak programs per cell, as in the pancreas
BACKGROUND_ACTIVITY = 0.4
REPLICATE_GENE_LOG_SD = 0.05  # replicate wells of one cell line differ little
REPLICATE_LIBRARY_LOG_SD = 0.1

# Cardiomyocytes (Chaffin et al. 2022, as used by Geneformer): a cardiomyocyte program in every cell,
# a shared failing-heart program in HCM and DCM and weaker disease-specific ones. A driver gene's
# activity sets the failing-heart program. Donor effects are strong (gene-wise factors, library
# sizes, donor states, disease severity), so folds that share donors between training and test
# score clearly higher than donor-grouped folds.
CARDIOMYOCYTE_PROGRAM_ROLES = ("cardiomyocyte", "failing_heart", "HCM", "DCM")
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
# Planted for in silico perturbation: the driver (a TF-like gene whose activity sets the
# failing-heart program), a cooperating pair whose co-bound targets respond to both together far
# more than to either alone, and inert controls outside every disease program.
DRIVER_LOG_FOLD_CHANGE = 2.0
PAIR_LOG_FOLD_CHANGE = 3.0
PAIR_ON_PROBABILITY = 0.5
PAIR_ACTIVITY_RANGE = (0.7, 1.3)
PAIR_SINGLE_LOG_FOLD_CHANGE = 0.2
PAIR_JOINT_LOG_FOLD_CHANGE = 1.5
N_PAIR_TARGETS = 12
N_CONTROL_GENES = 20
PLANTED_GENE_BASELINE_QUANTILES = (0.5, 0.97)  # well expressed, so they reach the top ranks


@dataclass(frozen=True)
class GeneProgram:
    """A co-regulated gene set: genes (indices into the world's genes), their log fold changes, and
    the fraction of a cell's mRNA the program adds when fully active (its strength)."""

    name: str
    genes: np.ndarray
    log_fold_changes: np.ndarray
    strength: float


@dataclass(frozen=True)
class World:
    """The shared biology every simulated dataset is drawn from."""

    seed: int
    gene_ids: np.ndarray
    baseline_log_expression: np.ndarray
    dispersion: np.ndarray
    housekeeping: np.ndarray
    programs: tuple[GeneProgram, ...]
    dosage_sensitive: np.ndarray
    dosage_insensitive: np.ndarray

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    def program_effects(self) -> np.ndarray:
        """Dense (program x gene) log fold changes, so activities map to expression by one matmul."""
        return _effects_matrix(self.n_genes, [(program.genes, program.log_fold_changes) for program in self.programs])

    def truth(self) -> dict[str, Any]:
        """What the world planted, keyed by Ensembl ID (for the truth file)."""
        return {
            "seed": self.seed,
            "n_genes": self.n_genes,
            "housekeeping_genes": self.gene_ids[self.housekeeping].tolist(),
            "dosage_sensitive_genes": self.gene_ids[self.dosage_sensitive].tolist(),
            "dosage_insensitive_genes": self.gene_ids[self.dosage_insensitive].tolist(),
            "programs": {
                program.name: {
                    "genes": self.gene_ids[program.genes].tolist(),
                    "log_fold_changes": np.round(program.log_fold_changes, 4).tolist(),
                    "strength": round(program.strength, 4),
                }
                for program in self.programs
            },
        }


@dataclass(frozen=True)
class CellPlan:
    """Everything that sets each cell's expected expression; `sample_counts` draws counts from it.

    gene_offsets: (per-level gene-wise log factors, per-cell level codes) pairs, e.g. technology
    and donor batch effects. ambient_profile/ambient_fraction: ambient RNA mixed into each cell.
    local_activity/local_effects: (cell x local program) activities and (local program x gene) log
    fold changes of regulation one dataset adds to the world's (e.g. a driver gene and its targets).
    """

    program_activity: np.ndarray
    gene_offsets: tuple[tuple[np.ndarray, np.ndarray], ...]
    library_size: np.ndarray
    ambient_profile: np.ndarray | None = None
    ambient_fraction: np.ndarray | None = None
    local_activity: np.ndarray | None = None
    local_effects: np.ndarray | None = None


@dataclass(frozen=True)
class SimulatedDataset:
    adata: ad.AnnData
    truth: dict[str, Any]


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per (seed, purpose), so adding a dataset never changes another."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(stream.encode()),)))


def vocabulary_genes() -> np.ndarray:
    """Ensembl IDs of the V1 token dictionary, special tokens left out, in dictionary order."""
    tokens = load_token_dictionary(VOCABULARY)
    return np.array([token for token in tokens if token not in SPECIAL_TOKENS])


def build_world(seed: int, n_genes: int, n_programs: int, n_dosage_genes_per_class: int = 0) -> World:
    """Draw the genes, their baseline expression and dispersion, housekeeping genes and programs,
    then plant the dosage-sensitive and -insensitive genes (none when n_dosage_genes_per_class is 0,
    which reproduces a world drawn before dosage genes existed)."""
    vocabulary = vocabulary_genes()
    if not 1 <= n_genes <= len(vocabulary):
        raise InputError(
            "simulation.n_genes",
            f"{n_genes} genes requested; the V1 vocabulary has {len(vocabulary)}",
            f"set simulation.n_genes between 1 and {len(vocabulary)}",
        )
    rng = stream_rng(seed, WORLD_STREAM)
    gene_ids = np.sort(rng.choice(vocabulary, size=n_genes, replace=False))
    baseline = rng.normal(0.0, BASELINE_LOG_SD, n_genes)
    n_housekeeping = max(1, round(HOUSEKEEPING_FRACTION * n_genes))
    housekeeping = np.sort(rng.choice(n_genes, size=n_housekeeping, replace=False))
    baseline[housekeeping] = np.abs(baseline[housekeeping]) + HOUSEKEEPING_LOG_BOOST
    dispersion = MEDIAN_DISPERSION * np.exp(rng.normal(0.0, 0.5, n_genes))
    dispersion[housekeeping] /= 4  # housekeeping genes vary less between cells
    regulatable = np.setdiff1d(np.arange(n_genes), housekeeping)
    drawn = [_draw_program(regulatable, rng) for _ in range(n_programs)]
    strength = PROGRAM_MEDIAN_STRENGTH * np.exp(rng.normal(0.0, PROGRAM_STRENGTH_LOG_SD, n_programs))
    sensitive, insensitive = np.array([], dtype=int), np.array([], dtype=int)
    if n_dosage_genes_per_class:
        sensitive, insensitive, drawn, dispersion = _plant_dosage_genes(
            n_dosage_genes_per_class, regulatable, baseline, dispersion, drawn, stream_rng(seed, DOSAGE_STREAM)
        )
    programs = _calibrate_programs(baseline, drawn, strength)
    return World(seed, gene_ids, baseline, dispersion, housekeeping, programs, sensitive, insensitive)


def world_from_settings(simulation: dict[str, Any], seed: int) -> World:
    """The world every dataset of this configuration is drawn from."""
    return build_world(
        seed, simulation["n_genes"], simulation["n_programs"], simulation["dosage_genes"]["n_per_class"]
    )


def _plant_dosage_genes(
    n_per_class: int,
    regulatable: np.ndarray,
    baseline_log_expression: np.ndarray,
    dispersion: np.ndarray,
    drawn: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Pick both classes from bands of well-expressed genes; make sensitive genes low-dispersion program
    hubs and insensitive genes high-dispersion loners. Returns (sensitive, insensitive, programs, dispersion)."""
    n_genes, n_programs = len(baseline_log_expression), len(drawn)
    membership = _effects_matrix(n_genes, [(genes, np.ones(len(genes))) for genes, _ in drawn]) > 0
    n_memberships = membership.sum(axis=0)
    loner_pool = _in_expression_band(regulatable, baseline_log_expression, INSENSITIVE_BASELINE_QUANTILES)
    loner_pool = loner_pool[n_memberships[loner_pool] <= 1]
    hub_pool = _in_expression_band(regulatable, baseline_log_expression, SENSITIVE_BASELINE_QUANTILES)
    if n_per_class > len(loner_pool) or 2 * n_per_class > len(hub_pool):  # hubs left whatever loners are drawn
        raise InputError(
            "simulation.dosage_genes.n_per_class",
            f"{n_per_class} genes per class requested; this world has {len(loner_pool)} well-expressed genes "
            f"in at most one program and {len(hub_pool)} candidate hubs",
            f"set n_per_class to at most {min(len(loner_pool), len(hub_pool) // 2)} or raise simulation.n_genes",
        )
    insensitive = np.sort(rng.choice(loner_pool, size=n_per_class, replace=False))
    sensitive = np.sort(rng.choice(np.setdiff1d(hub_pool, insensitive), size=n_per_class, replace=False))

    low_programs, high_programs = HUB_PROGRAM_RANGE
    target_memberships = rng.integers(low_programs, high_programs + 1, n_per_class)
    current = n_memberships[sensitive]
    n_to_join = np.clip(target_memberships - current, 0, n_programs - current)
    keys = rng.random((n_per_class, n_programs))
    keys[membership[:, sensitive].T] = np.inf  # never join a program twice
    join_rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    joins = join_rank < n_to_join[:, None]  # (sensitive gene x program)
    join_log_fold_changes = rng.uniform(*HUB_LOG_FOLD_CHANGE_RANGE, (n_per_class, n_programs))
    planted = []
    for program, (genes, log_fold_changes) in enumerate(drawn):
        log_fold_changes = np.where(
            np.isin(genes, insensitive), log_fold_changes * INSENSITIVE_FOLD_CHANGE_SHRINK, log_fold_changes
        )
        joining = joins[:, program]
        genes = np.concatenate([genes, sensitive[joining]])
        log_fold_changes = np.concatenate([log_fold_changes, join_log_fold_changes[joining, program]])
        order = np.argsort(genes)
        planted.append((genes[order], log_fold_changes[order]))

    dispersion = dispersion.copy()
    scatter = np.exp(rng.normal(0.0, DOSAGE_DISPERSION_LOG_SD, (2, n_per_class)))
    dispersion[sensitive] *= SENSITIVE_DISPERSION_FACTOR * scatter[0]
    dispersion[insensitive] *= INSENSITIVE_DISPERSION_FACTOR * scatter[1]
    return sensitive, insensitive, planted, dispersion


def _draw_program(regulatable: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A program of log-normal size with gamma-distributed (long-tailed) fold changes, a few repressed."""
    low, high = PROGRAM_SIZE_RANGE
    size = int(np.clip(round(PROGRAM_MEDIAN_SIZE * np.exp(rng.normal(0.0, 0.5))), low, min(high, len(regulatable))))
    genes = np.sort(rng.choice(regulatable, size=size, replace=False))
    log_fold_changes = rng.gamma(2.0, 0.8, size)
    repressed = rng.random(size) < REPRESSED_GENE_FRACTION
    log_fold_changes[repressed] *= -0.5
    return genes, log_fold_changes


def _calibrate_programs(
    baseline_log_expression: np.ndarray, drawn: list[tuple[np.ndarray, np.ndarray]], strength: np.ndarray
) -> tuple[GeneProgram, ...]:
    """Scale each program's fold changes so that, fully active, it adds `strength` of the cell's mRNA.

    Without this, one high-baseline gene with a large fold change can make a program dominate the
    library, so the difficulty of every downstream task would swing wildly with the seed. Fold
    changes are capped at MAX_LOG_FOLD_CHANGE, so a program of few, rare genes may fall short of
    its target; the strength recorded is the one reached.
    """
    proportions = _softmax_rows(baseline_log_expression[None, :])[0]
    effects = _effects_matrix(len(baseline_log_expression), drawn)
    low, high = np.zeros(len(drawn)), np.full(len(drawn), PROGRAM_MAX_SCALE)
    for _ in range(CALIBRATION_STEPS):  # bisection, all programs at once: added mass grows with scale
        scale = (low + high) / 2
        added = _added_mass(proportions, effects, scale)
        too_strong = added > strength
        high = np.where(too_strong, scale, high)
        low = np.where(too_strong, low, scale)
    scale = (low + high) / 2
    reached = _added_mass(proportions, effects, scale)
    return tuple(
        GeneProgram(
            f"program_{index:02d}",
            genes,
            np.minimum(log_fold_changes * factor, MAX_LOG_FOLD_CHANGE),
            float(program_strength),
        )
        for index, ((genes, log_fold_changes), factor, program_strength) in enumerate(zip(drawn, scale, reached))
    )


def _added_mass(proportions: np.ndarray, effects: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Fraction of mRNA each program adds at full activity when its fold changes are scaled."""
    return (proportions * np.expm1(np.minimum(scale[:, None] * effects, MAX_LOG_FOLD_CHANGE))).sum(axis=1)


def _in_expression_band(
    genes: np.ndarray, baseline_log_expression: np.ndarray, quantiles: tuple[float, float]
) -> np.ndarray:
    """The genes whose baseline lies between the given quantiles of these genes' baselines."""
    low, high = np.quantile(baseline_log_expression[genes], quantiles)
    return genes[(baseline_log_expression[genes] >= low) & (baseline_log_expression[genes] <= high)]


def _effects_matrix(n_genes: int, gene_sets: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Dense (program x gene) matrix from (gene indices, log fold changes) pairs."""
    effects = np.zeros((len(gene_sets), n_genes))
    for row, (genes, log_fold_changes) in enumerate(gene_sets):
        effects[row, genes] = log_fold_changes
    return effects


def expression_probabilities(world: World, program_activity: np.ndarray) -> np.ndarray:
    """Per-row expression proportions (rows sum to 1) for given program activities, no batch effects."""
    log_mean = world.baseline_log_expression + program_activity @ world.program_effects()
    return _softmax_rows(log_mean)


def _softmax_rows(log_mean: np.ndarray) -> np.ndarray:
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    return proportions / proportions.sum(axis=1, keepdims=True)


def sample_counts(world: World, plan: CellPlan, rng: np.random.Generator, desc: str = "simulating") -> sp.csr_matrix:
    """Negative-binomial counts (gamma-Poisson) for every planned cell, drawn in row chunks."""
    effects = world.program_effects()
    gamma_shape = 1.0 / world.dispersion
    n_cells = len(plan.library_size)
    blocks = []
    for start in tqdm(range(0, n_cells, CHUNK_CELLS), desc=desc, unit="chunk", leave=False):
        rows = slice(start, min(start + CHUNK_CELLS, n_cells))
        log_mean = world.baseline_log_expression + plan.program_activity[rows] @ effects
        if plan.local_effects is not None:
            log_mean += plan.local_activity[rows] @ plan.local_effects
        for log_factors, codes in plan.gene_offsets:
            log_mean += log_factors[codes[rows]]
        proportions = _softmax_rows(log_mean)
        if plan.ambient_profile is not None:
            fraction = plan.ambient_fraction[rows, None]
            proportions = (1.0 - fraction) * proportions + fraction * plan.ambient_profile
        mean = proportions * plan.library_size[rows, None]
        rate = mean * rng.standard_gamma(gamma_shape, size=mean.shape) / gamma_shape
        blocks.append(sp.csr_matrix(rng.poisson(rate).astype(np.int32)))
    counts = sp.vstack(blocks, format="csr")
    counts.data = counts.data.astype(np.int32, copy=False)
    return counts


def _as_anndata(counts: sp.csr_matrix, world: World, name: str, obs_columns: dict[str, Any]) -> ad.AnnData:
    """AnnData in the workflow's contract: CSR int32 counts, Ensembl var index, n_counts = row sums."""
    n_cells = counts.shape[0]
    obs = pd.DataFrame(obs_columns, index=pd.Index([f"{name}_{i:05d}" for i in range(n_cells)], name="cell_id"))
    obs["n_counts"] = np.asarray(counts.sum(axis=1)).ravel().astype(np.int64)
    var = pd.DataFrame({"ensembl_id": world.gene_ids}, index=pd.Index(world.gene_ids, name="gene_id"))
    return ad.AnnData(X=counts, obs=obs, var=var)


def _categorical(values: np.ndarray, categories: list[str]) -> pd.Categorical:
    return pd.Categorical(np.asarray(categories)[values], categories=categories)


def _level_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{index + 1}" for index in range(count)]


def _technology_names(count: int) -> list[str]:
    """tech_a, tech_b, ..., tech_z, tech_aa, ... (readable batch names in any number)."""
    names = []
    for number in range(1, count + 1):
        suffix = ""
        while number:
            number, remainder = divmod(number - 1, 26)
            suffix = string.ascii_lowercase[remainder] + suffix
        names.append(f"tech_{suffix}")
    return names


def _draw_library_sizes(median: np.ndarray, log_sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Log-normal expected library sizes, floored as quality control would (and so no cell is empty)."""
    return np.maximum(median * np.exp(rng.normal(0.0, 1.0, len(median)) * log_sd), MIN_LIBRARY_SIZE)


def _weak_program_activity(
    n_cells: int, candidates: np.ndarray, n_programs: int, per_cell: int, high: float, rng: np.random.Generator
) -> np.ndarray:
    """Each cell gets `per_cell` distinct programs from `candidates` at weak uniform(0, high) activity."""
    activity = np.zeros((n_cells, n_programs))
    per_cell = min(per_cell, len(candidates))
    if per_cell == 0:
        return activity
    keys = rng.random((n_cells, len(candidates)))
    chosen = candidates[np.argpartition(keys, per_cell - 1, axis=1)[:, :per_cell]]
    np.put_along_axis(activity, chosen, rng.uniform(0.0, high, chosen.shape), axis=1)
    return activity


def simulate_corpus(world: World, simulation: dict[str, Any], seed: int) -> SimulatedDataset:
    """Unlabelled pretraining cells: one dominant tissue program, a few weaker ones, mild donor effects."""
    settings = simulation["corpus"]
    n_cells, n_donors = settings["n_cells"], settings["n_donors"]
    n_programs = len(world.programs)
    rng = stream_rng(seed, "corpus")
    program_frequency = rng.dirichlet(np.full(n_programs, 2.0))
    dominant = rng.choice(n_programs, size=n_cells, p=program_frequency)
    activity = _weak_program_activity(n_cells, np.arange(n_programs), n_programs, 4, 0.4, rng)
    activity[np.arange(n_cells), dominant] = rng.uniform(0.6, 1.2, n_cells)
    donor_weights = rng.dirichlet(np.full(n_donors, 5.0))
    donor = rng.choice(n_donors, size=n_cells, p=donor_weights)
    donor_log_factors = rng.normal(0.0, 0.1, (n_donors, world.n_genes))
    donor_median = simulation["median_library_size"] * np.exp(rng.normal(0.0, 0.25, n_donors))
    library_size = _draw_library_sizes(donor_median[donor], np.full(n_cells, 0.45), rng)
    local_activity, local_effects = _corpus_cardiac_cells(world, seed, settings["cardiac_fraction"], activity)
    plan = CellPlan(activity, ((donor_log_factors, donor),), library_size, local_activity=local_activity,
                    local_effects=local_effects)
    counts = sample_counts(world, plan, rng, desc="corpus")
    program_names = [program.name for program in world.programs]
    donors = _level_names("donor", n_donors)
    adata = _as_anndata(
        counts,
        world,
        "corpus",
        {"program": _categorical(dominant, program_names), "donor": _categorical(donor, donors)},
    )
    truth = {
        "program_frequency": dict(zip(program_names, np.round(program_frequency, 6).tolist())),
        "donors": {name: {"median_library_size": round(float(median), 2)} for name, median in zip(donors, donor_median)},
    }
    return SimulatedDataset(adata, truth)


def allocate_cell_type_counts(n_cells: int, min_cells_per_type: int) -> dict[str, int]:
    """Cells per type: the real pancreas proportions (largest remainder), at least min_cells_per_type each."""
    types = list(PANCREAS_REFERENCE_COUNTS)
    if n_cells < min_cells_per_type * len(types):
        raise InputError(
            "simulation.pancreas.n_cells",
            f"{n_cells} cells cannot give {len(types)} cell types {min_cells_per_type} cells each",
            f"set n_cells to at least {min_cells_per_type * len(types)} or lower min_cells_per_type",
        )
    reference = np.array([PANCREAS_REFERENCE_COUNTS[name] for name in types], dtype=float)
    # Water-filling: types whose proportional share is below the floor keep the floor; the rest share
    # the remaining cells proportionally.
    floored = np.zeros(len(types), dtype=bool)
    while True:
        remaining = n_cells - min_cells_per_type * floored.sum()
        share = remaining * reference / reference[~floored].sum()
        newly_floored = ~floored & (share < min_cells_per_type)
        if not newly_floored.any():
            break
        floored |= newly_floored
    exact = np.where(floored, min_cells_per_type, share)
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_cells - counts.sum()]] += 1
    return dict(zip(types, counts.tolist()))


def pancreas_type_activity(world: World, program_of_role: dict[str, int], marker_strength: float) -> np.ndarray:
    """(cell type x program) activities: lineage programs at full strength, own programs weaker."""
    types = list(PANCREAS_REFERENCE_COUNTS)
    activity = np.zeros((len(types), len(world.programs)))
    for lineage, members in PANCREAS_LINEAGES.items():
        activity[[types.index(member) for member in members], program_of_role[lineage]] = LINEAGE_ACTIVITY
    for row, cell_type in enumerate(types):
        activity[row, program_of_role[cell_type]] = marker_strength * PANCREAS_SPECIFIC_ACTIVITY[cell_type]
    return activity


def simulate_pancreas(world: World, simulation: dict[str, Any], seed: int) -> SimulatedDataset:
    """The 14 scIB pancreas cell types with lineage-shared programs, donors, technologies and ambient RNA."""
    settings = simulation["pancreas"]
    n_cells, n_donors, n_technologies = settings["n_cells"], settings["n_donors"], settings["n_technologies"]
    if len(world.programs) < len(PANCREAS_PROGRAM_ROLES):
        raise InputError(
            "simulation.n_programs",
            f"the pancreas needs {len(PANCREAS_PROGRAM_ROLES)} programs; the world has {len(world.programs)}",
            f"set simulation.n_programs to at least {len(PANCREAS_PROGRAM_ROLES)}",
        )
    type_counts = allocate_cell_type_counts(n_cells, settings["min_cells_per_type"])
    types = list(type_counts)
    rng = stream_rng(seed, "pancreas")
    program_indices = rng.permutation(len(world.programs))
    program_of_role = dict(zip(PANCREAS_PROGRAM_ROLES, program_indices[: len(PANCREAS_PROGRAM_ROLES)].tolist()))
    background_programs = np.sort(program_indices[len(PANCREAS_PROGRAM_ROLES) :])
    type_activity = pancreas_type_activity(world, program_of_role, settings["marker_strength"])

    cell_type = rng.permutation(np.repeat(np.arange(len(types)), list(type_counts.values())))
    jitter = np.clip(np.exp(rng.normal(0.0, 0.25, (n_cells, len(world.programs)))), 0.5, 1.6)
    activity = type_activity[cell_type] * jitter
    activity += _weak_program_activity(n_cells, background_programs, len(world.programs), 2, 0.4, rng)

    donor = rng.choice(n_donors, size=n_cells, p=rng.dirichlet(np.full(n_donors, 5.0)))
    technology = rng.choice(n_technologies, size=n_cells, p=rng.dirichlet(np.full(n_technologies, 5.0)))
    technology_log_factors = rng.normal(0.0, 0.3, (n_technologies, world.n_genes))
    donor_log_factors = rng.normal(0.0, 0.12, (n_donors, world.n_genes))
    technology_median = simulation["median_library_size"] * np.exp(rng.normal(0.0, 0.3, n_technologies))
    technology_log_sd = rng.uniform(0.25, 0.5, n_technologies)
    type_size_factor = np.exp(rng.normal(0.0, 0.25, len(types)))
    library_size = _draw_library_sizes(
        technology_median[technology] * type_size_factor[cell_type], technology_log_sd[technology], rng
    )
    type_profiles = expression_probabilities(world, type_activity)
    type_share = np.array(list(type_counts.values())) / n_cells
    ambient_profile = type_share @ type_profiles
    technology_ambient = rng.uniform(0.01, 0.08, n_technologies)
    ambient_mean = technology_ambient[technology]
    ambient_fraction = rng.beta(2.0, 2.0 * (1.0 - ambient_mean) / ambient_mean)
    plan = CellPlan(
        activity,
        ((technology_log_factors, technology), (donor_log_factors, donor)),
        library_size,
        ambient_profile,
        ambient_fraction,
    )
    counts = sample_counts(world, plan, rng, desc="pancreas")
    donors, technologies = _level_names("donor", n_donors), _technology_names(n_technologies)
    adata = _as_anndata(
        counts,
        world,
        "pancreas",
        {
            "cell_type": pd.Categorical(np.asarray(types)[cell_type], categories=sorted(types)),
            "donor": _categorical(donor, donors),
            "batch": _categorical(technology, technologies),
        },
    )
    truth = {
        "program_of_role": {role: world.programs[index].name for role, index in program_of_role.items()},
        "cell_types": {
            name: {
                "n_cells": type_counts[name],
                "program_activity": {
                    world.programs[index].name: round(float(type_activity[row, index]), 4)
                    for index in np.flatnonzero(type_activity[row])
                },
                "marker_genes": world.gene_ids[marker_genes(type_profiles, row)].tolist(),
            }
            for row, name in enumerate(types)
        },
        "donors": donors,
        "batches": {
            name: {
                "median_library_size": round(float(technology_median[index]), 2),
                "library_log_sd": round(float(technology_log_sd[index]), 4),
                "mean_ambient_fraction": round(float(technology_ambient[index]), 4),
            }
            for index, name in enumerate(technologies)
        },
    }
    return SimulatedDataset(adata, truth)


def marker_genes(type_profiles: np.ndarray, row: int, n_markers: int = N_MARKER_GENES) -> np.ndarray:
    """Genes most above every other type in this type's expected profile (log ratio to the runner-up)."""
    log_profiles = np.log(type_profiles)
    margin = log_profiles[row] - np.delete(log_profiles, row, axis=0).max(axis=0)
    ranked = np.argsort(-margin, kind="stable")[:n_markers]
    return ranked[margin[ranked] > 0]


def _require_programs(world: World, roles: tuple[str, ...], dataset: str) -> None:
    """Refuse a world with fewer programs than the dataset has roles to give out."""
    if len(world.programs) < len(roles):
        raise InputError(
            "simulation.n_programs",
            f"the {dataset} dataset needs {len(roles)} programs; the world has {len(world.programs)}",
            f"set simulation.n_programs to at least {len(roles)}",
        )


def _assign_program_roles(
    world: World, roles: tuple[str, ...], rng: np.random.Generator
) -> tuple[dict[str, int], np.ndarray]:
    """Seeded choice of the world programs that play each role; returns (program of role, the rest)."""
    program_indices = rng.permutation(len(world.programs))
    return dict(zip(roles, program_indices[: len(roles)].tolist())), np.sort(program_indices[len(roles) :])


def _split_cells(n_cells: int, weights: np.ndarray, floor: int) -> np.ndarray:
    """Cells per group: `floor` each, the rest in proportion to weights (largest remainder)."""
    exact = floor + (n_cells - floor * len(weights)) * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_cells - counts.sum()]] += 1
    return counts


def _program_genes(world: World, program: int, activated: bool) -> list[str]:
    """Ensembl IDs of a program's activated (positive fold change) or repressed genes."""
    genes = world.programs[program].genes
    fold_changes = world.programs[program].log_fold_changes
    return world.gene_ids[genes[fold_changes > 0] if activated else genes[fold_changes < 0]].tolist()


def _identity_activity(n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Activity of the program every cell of the dataset shares, scattered a little around 1."""
    return np.clip(np.exp(rng.normal(0.0, IDENTITY_ACTIVITY_LOG_SD, n_cells)), *IDENTITY_ACTIVITY_RANGE)


def hill_response(dose: np.ndarray, ec50: np.ndarray | float, hill_coefficient: float) -> np.ndarray:
    """Saturating dose-response: the fraction of the maximal response reached at each dose (0 at dose 0)."""
    ratio = (np.asarray(dose, dtype=float) / ec50) ** hill_coefficient
    return ratio / (1.0 + ratio)


def simulate_sciplex2(world: World, simulation: dict[str, Any], seed: int) -> SimulatedDataset:
    """A549 cells treated with vehicle or nutlin-3A doses: a p53 response along a Hill curve that
    arrests proliferation, off-target stress at the top doses, cells heterogeneous in sensitivity,
    a few replicate wells; cells split evenly over the doses."""
    settings = simulation["sciplex2"]
    n_cells, n_replicates = settings["n_cells"], settings["n_replicates"]
    doses = np.sort(np.asarray(settings["doses"], dtype=float))
    labels = [dose_label(dose) for dose in doses]
    if len(set(labels)) < len(labels) or n_cells < len(doses):
        raise InputError(
            "simulation.sciplex2",
            f"doses {settings['doses']} give labels {labels} for {n_cells} cells",
            "give doses that differ in their first 6 significant digits and at least one cell per dose",
        )
    _require_programs(world, SCIPLEX2_PROGRAM_ROLES, "sciplex2")
    rng = stream_rng(seed, "sciplex2")
    program_of_role, background_programs = _assign_program_roles(world, SCIPLEX2_PROGRAM_ROLES, rng)
    cells_per_dose = _split_cells(n_cells, np.ones(len(doses)), 0)
    dose_index = rng.permutation(np.repeat(np.arange(len(doses)), cells_per_dose))

    cell_ec50 = NUTLIN_EC50_UM * np.exp(rng.normal(0.0, CELL_EC50_LOG_SD, n_cells))
    non_responder = rng.random(n_cells) < NON_RESPONDER_FRACTION
    cell_max_response = np.exp(rng.normal(0.0, CELL_MAX_RESPONSE_LOG_SD, n_cells)) * np.where(
        non_responder, NON_RESPONDER_RESPONSE, 1.0
    )
    response = cell_max_response * hill_response(doses[dose_index], cell_ec50, NUTLIN_HILL_COEFFICIENT)
    activity = _weak_program_activity(
        n_cells, background_programs, len(world.programs), BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    activity[:, program_of_role["cell_line"]] = _identity_activity(n_cells, rng)
    activity[:, program_of_role["p53_response"]] = P53_MAX_ACTIVITY * response
    stress = hill_response(doses[dose_index], STRESS_EC50_UM, STRESS_HILL_COEFFICIENT)
    activity[:, program_of_role["off_target_stress"]] = STRESS_MAX_ACTIVITY * cell_max_response * stress
    activity[:, program_of_role["proliferation"]] = rng.uniform(*PROLIFERATION_RANGE, n_cells) * (
        1.0 - PROLIFERATION_ARREST * np.minimum(response, 1.0)
    )

    replicate = rng.choice(n_replicates, size=n_cells)
    replicate_log_factors = rng.normal(0.0, REPLICATE_GENE_LOG_SD, (n_replicates, world.n_genes))
    replicate_median = simulation["median_library_size"] * np.exp(
        rng.normal(0.0, REPLICATE_LIBRARY_LOG_SD, n_replicates)
    )
    library_size = _draw_library_sizes(replicate_median[replicate], np.full(n_cells, 0.4), rng)
    plan = CellPlan(activity, ((replicate_log_factors, replicate),), library_size)
    counts = sample_counts(world, plan, rng, desc="sciplex2")
    replicates = _level_names("replicate", n_replicates)
    treatment = np.where(doses[dose_index] == 0, "vehicle", "nutlin3a")
    adata = _as_anndata(
        counts,
        world,
        "sciplex2",
        {
            "dose": _categorical(dose_index, labels),
            "treatment": pd.Categorical(treatment, categories=sorted(set(treatment))),
            "replicate": _categorical(replicate, replicates),
        },
    )
    p53_program, proliferation_program = program_of_role["p53_response"], program_of_role["proliferation"]
    truth = {
        "program_of_role": {role: world.programs[index].name for role, index in program_of_role.items()},
        "p53_response": {
            "ec50_um": NUTLIN_EC50_UM,
            "hill_coefficient": NUTLIN_HILL_COEFFICIENT,
            "max_activity": P53_MAX_ACTIVITY,
            "cell_ec50_log_sd": CELL_EC50_LOG_SD,
            "cell_max_response_log_sd": CELL_MAX_RESPONSE_LOG_SD,
            "non_responder_fraction": NON_RESPONDER_FRACTION,
            "proliferation_arrest": PROLIFERATION_ARREST,
        },
        "off_target_stress": {
            "ec50_um": STRESS_EC50_UM,
            "hill_coefficient": STRESS_HILL_COEFFICIENT,
            "max_activity": STRESS_MAX_ACTIVITY,
        },
        "doses": {
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
        "p53_target_genes": _program_genes(world, p53_program, activated=True),
        "p53_repressed_genes": _program_genes(world, p53_program, activated=False),
        "cell_cycle_genes": _program_genes(world, proliferation_program, activated=True),
        "replicates": {
            name: {"median_library_size": round(float(median), 2)}
            for name, median in zip(replicates, replicate_median)
        },
    }
    return SimulatedDataset(adata, truth)


def _perturbation_gene_pool(world: World, role_programs: list[int]) -> np.ndarray:
    """Well-expressed regulatable genes outside the given programs and the dosage label genes."""
    excluded = np.concatenate(
        [world.housekeeping, world.dosage_sensitive, world.dosage_insensitive]
        + [world.programs[index].genes for index in role_programs]
    )
    candidates = np.setdiff1d(np.arange(world.n_genes), excluded)
    return _in_expression_band(candidates, world.baseline_log_expression, PLANTED_GENE_BASELINE_QUANTILES)


def _cardiomyocyte_roles(
    world: World, rng: np.random.Generator
) -> tuple[dict[str, int], np.ndarray, tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The cardiomyocytes' disease programs (program of role, background programs) and planted genes
    (driver, pair, pair targets, controls), drawn first from the cardiomyocytes' stream: the corpus
    redraws them from a fresh copy of that stream to plant the same regulation."""
    _require_programs(world, CARDIOMYOCYTE_PROGRAM_ROLES, "cardiomyocytes")
    program_of_role, background_programs = _assign_program_roles(world, CARDIOMYOCYTE_PROGRAM_ROLES, rng)
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


def _planted_regulation(world: World, driver: int, pair: np.ndarray, pair_targets: np.ndarray) -> np.ndarray:
    """(local program x gene) log fold changes: the driver, each pair member (and, one member on,
    its co-bound targets a little), and the pair together (its targets far more)."""
    local_effects = np.zeros((4, world.n_genes))  # driver, first of pair, second of pair, pair together
    local_effects[0, driver] = DRIVER_LOG_FOLD_CHANGE
    local_effects[1, pair[0]] = local_effects[2, pair[1]] = PAIR_LOG_FOLD_CHANGE
    local_effects[np.ix_([1, 2], pair_targets)] = PAIR_SINGLE_LOG_FOLD_CHANGE
    local_effects[3, pair_targets] = PAIR_JOINT_LOG_FOLD_CHANGE
    return local_effects


def _planted_activity(driver_activity: np.ndarray, carriers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(cell x local program) activity of the planted regulation, columns as `_planted_regulation`'s
    rows: the driver's, each pair member's (on in PAIR_ON_PROBABILITY of the `carriers`), and their product."""
    n_cells = len(driver_activity)
    pair_on = carriers[:, None] & (rng.random((n_cells, 2)) < PAIR_ON_PROBABILITY)
    pair_activity = pair_on * rng.uniform(*PAIR_ACTIVITY_RANGE, (n_cells, 2))
    return np.column_stack([driver_activity, pair_activity, pair_activity.prod(axis=1)])


def _corpus_cardiac_cells(
    world: World, seed: int, fraction: float, activity: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Cardiomyocyte-like corpus cells (a `fraction`, their own stream): the cardiomyocytes' driver
    sets the failing-heart program and the pair its co-bound targets, as there, so that pretraining
    can learn the links in silico deletion looks for (the corpus of Geneformer held real heart cells).
    Adds to `activity` in place; returns the local (activity, effects) of the plan, None when off."""
    if fraction == 0:
        return None, None
    program_of_role, _, (driver, pair, pair_targets, _) = _cardiomyocyte_roles(
        world, stream_rng(seed, "cardiomyocytes"))
    rng = stream_rng(seed, "corpus_cardiac")
    n_cells = activity.shape[0]
    cardiac = rng.random(n_cells) < fraction
    driver_activity = cardiac * rng.uniform(0.0, MAX_DRIVER_ACTIVITY, n_cells)
    activity[:, program_of_role["failing_heart"]] += FAILING_PROGRAM_ACTIVITY * driver_activity
    return _planted_activity(driver_activity, cardiac, rng), _planted_regulation(world, driver, pair, pair_targets)


def simulate_cardiomyocytes(world: World, simulation: dict[str, Any], seed: int) -> SimulatedDataset:
    """NF, HCM and DCM cardiomyocytes: donors nested in disease with strong donor effects, a driver
    gene setting the failing-heart program, a cooperating gene pair and inert control genes."""
    settings = simulation["cardiomyocytes"]
    n_cells = settings["n_cells"]
    donors_per_disease = np.array([settings["donors_per_disease"][disease] for disease in DISEASES])
    n_donors = int(donors_per_disease.sum())
    if n_cells < MIN_CELLS_PER_DONOR * n_donors:
        raise InputError(
            "simulation.cardiomyocytes.n_cells",
            f"{n_cells} cells cannot give {n_donors} donors {MIN_CELLS_PER_DONOR} cells each",
            f"set n_cells to at least {MIN_CELLS_PER_DONOR * n_donors} or use fewer donors_per_disease",
        )
    rng = stream_rng(seed, "cardiomyocytes")
    program_of_role, background_programs, (driver, pair, pair_targets, controls) = _cardiomyocyte_roles(world, rng)

    donor_disease = np.repeat(np.arange(len(DISEASES)), donors_per_disease)
    donor_weights = rng.dirichlet(np.full(n_donors, DONOR_CELL_CONCENTRATION))
    donor_cells = _split_cells(n_cells, donor_weights, MIN_CELLS_PER_DONOR)
    donor = rng.permutation(np.repeat(np.arange(n_donors), donor_cells))
    disease = donor_disease[donor]
    donor_severity = np.exp(rng.normal(0.0, DONOR_SEVERITY_LOG_SD, n_donors))
    driver_level = np.array([DISEASE_DRIVER_LEVEL[name] for name in DISEASES])
    driver_activity = np.minimum(
        driver_level[disease] * donor_severity[donor] * np.exp(rng.normal(0.0, CELL_DRIVER_LOG_SD, n_cells)),
        MAX_DRIVER_ACTIVITY,
    )

    n_programs = len(world.programs)
    activity = _weak_program_activity(
        n_cells, background_programs, n_programs, BACKGROUND_PROGRAMS_PER_CELL, BACKGROUND_ACTIVITY, rng
    )
    donor_state = _weak_program_activity(
        n_donors, background_programs, n_programs, DONOR_STATE_PROGRAMS, DONOR_STATE_MAX_ACTIVITY, rng
    )
    activity += donor_state[donor]
    activity[:, program_of_role["cardiomyocyte"]] = _identity_activity(n_cells, rng)
    activity[:, program_of_role["failing_heart"]] = FAILING_PROGRAM_ACTIVITY * driver_activity
    specific = DISEASE_SPECIFIC_ACTIVITY * donor_severity[donor] * np.exp(
        rng.normal(0.0, DISEASE_SPECIFIC_CELL_LOG_SD, n_cells)
    )
    for row, name in enumerate(DISEASES[1:], start=1):
        activity[:, program_of_role[name]] = np.where(disease == row, specific, 0.0)

    local_activity = _planted_activity(driver_activity, np.ones(n_cells, dtype=bool), rng)
    local_effects = _planted_regulation(world, driver, pair, pair_targets)

    donor_log_factors = rng.normal(0.0, DONOR_GENE_LOG_SD, (n_donors, world.n_genes))
    donor_median = simulation["median_library_size"] * np.exp(rng.normal(0.0, DONOR_LIBRARY_LOG_SD, n_donors))
    library_size = _draw_library_sizes(donor_median[donor], np.full(n_cells, 0.4), rng)
    plan = CellPlan(
        activity,
        ((donor_log_factors, donor),),
        library_size,
        local_activity=local_activity,
        local_effects=local_effects,
    )
    counts = sample_counts(world, plan, rng, desc="cardiomyocytes")
    donors = _level_names("donor", n_donors)
    adata = _as_anndata(
        counts,
        world,
        "cardiomyocytes",
        {"disease": _categorical(disease, list(DISEASES)), "donor": _categorical(donor, donors)},
    )
    role_name = {role: world.programs[index].name for role, index in program_of_role.items()}
    truth = {
        "program_of_role": role_name,
        "diseases": {
            name: {
                "donors": [donors[index] for index in np.flatnonzero(donor_disease == row)],
                "n_cells": int((disease == row).sum()),
                "driver_level": DISEASE_DRIVER_LEVEL[name],
            }
            for row, name in enumerate(DISEASES)
        },
        "donors": {
            name: {
                "disease": DISEASES[donor_disease[index]],
                "n_cells": int(donor_cells[index]),
                "severity": round(float(donor_severity[index]), 4),
                "median_library_size": round(float(donor_median[index]), 2),
            }
            for index, name in enumerate(donors)
        },
        "driver": {
            "gene": str(world.gene_ids[driver]),
            "log_fold_change": DRIVER_LOG_FOLD_CHANGE,
            "drives_program": role_name["failing_heart"],
            "program_activity_per_driver_activity": FAILING_PROGRAM_ACTIVITY,
            "target_genes": _program_genes(world, program_of_role["failing_heart"], activated=True),
        },
        "cooperating_pair": {
            "genes": world.gene_ids[pair].tolist(),
            "log_fold_change": PAIR_LOG_FOLD_CHANGE,
            "on_probability": PAIR_ON_PROBABILITY,
            "target_genes": world.gene_ids[pair_targets].tolist(),
            "target_log_fold_change_each_alone": PAIR_SINGLE_LOG_FOLD_CHANGE,
            "target_log_fold_change_together": 2 * PAIR_SINGLE_LOG_FOLD_CHANGE + PAIR_JOINT_LOG_FOLD_CHANGE,
            "activity_when_on": list(PAIR_ACTIVITY_RANGE),
        },
        "control_genes": world.gene_ids[controls].tolist(),
    }
    return SimulatedDataset(adata, truth)


DatasetBuilder = Callable[[World, dict[str, Any], int], SimulatedDataset]
DATASET_BUILDERS: dict[str, DatasetBuilder] = {
    "corpus": simulate_corpus,
    "pancreas": simulate_pancreas,
    "sciplex2": simulate_sciplex2,
    "cardiomyocytes": simulate_cardiomyocytes,
}


def simulate_dataset(
    name: str, simulation: dict[str, Any], seed: int, output_h5ad: str | Path, output_truth: str | Path
) -> None:
    """Simulate one named dataset from the seeded world; write the h5ad and its truth JSON atomically."""
    if name not in DATASET_BUILDERS:
        raise InputError(
            f"datasets.{name}",
            f"no simulator for a dataset named '{name}'",
            f"use one of {sorted(DATASET_BUILDERS)} or give the dataset source: h5ad with a path",
        )
    world = world_from_settings(simulation, seed)
    dataset = DATASET_BUILDERS[name](world, simulation, seed)
    truth = {"dataset": name, "seed": seed, "simulation": simulation, "world": world.truth(), **dataset.truth}
    with atomic_path(output_h5ad) as temporary:
        dataset.adata.write_h5ad(temporary)
    write_json(truth, output_truth)


def write_dosage_gene_labels(simulation: dict[str, Any], seed: int, output_tsv: str | Path) -> None:
    """Write the world's planted dosage-sensitive and -insensitive genes as a gene label TSV
    (ensembl_id, label), the gene classification task's ground truth, sorted by Ensembl ID."""
    n_per_class = simulation["dosage_genes"]["n_per_class"]
    if n_per_class < 1:
        raise InputError(
            "simulation.dosage_genes.n_per_class",
            "is 0, so the world plants no dosage genes to label",
            "set n_per_class to at least the number of gene folds (e.g. 60)",
        )
    world = world_from_settings(simulation, seed)
    labels = pd.DataFrame(
        {
            "ensembl_id": world.gene_ids[np.concatenate([world.dosage_sensitive, world.dosage_insensitive])],
            "label": [DOSAGE_SENSITIVE] * n_per_class + [DOSAGE_INSENSITIVE] * n_per_class,
        }
    )
    write_tsv(labels.sort_values("ensembl_id", ignore_index=True), output_tsv)


def write_gene_sets(simulation: dict[str, Any], seed: int, output_gmt: str | Path) -> None:
    """Write the world's gene programs as a GMT file (name, description, Ensembl IDs), the gene sets
    of pathway masking on the simulated corpus."""
    world = world_from_settings(simulation, seed)
    lines = [
        "\t".join([program.name, f"simulated gene program (strength {program.strength:.4f})",
                   *world.gene_ids[np.sort(program.genes)]])
        for program in world.programs
    ]
    with atomic_path(output_gmt) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
