"""The shared world every simulated dataset is drawn from, derived from the seed alone.

Genes are drawn from Geneformer's V1 vocabulary, with a long-tailed baseline expression, gene-wise
dispersions, housekeeping genes and gene programs (gene sets with uneven log fold changes,
calibrated to a strength). The world also plants dosage-sensitive genes (tightly regulated hubs)
and dosage-insensitive ones (loosely regulated), so every dataset, the corpus above all, carries
the difference the gene label file names. Every dataset is drawn from the same world, so a model
pretrained on the corpus has seen the co-expression the downstream tasks rely on.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import truths
from ..core.dictionaries import SPECIAL_TOKENS, load_token_dictionary
from ..core.errors import InputError
from .settings import SimulationSettings

VOCABULARY = "geneformer_v1_tokens"
WORLD_STREAM = "world"

BASELINE_LOG_SD = 1.6  # spread of per-gene baseline log expression: a few very high genes, many low
HOUSEKEEPING_FRACTION = 0.03
HOUSEKEEPING_LOG_BOOST = 2.0
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
        """What the world planted, keyed by Ensembl ID (the truth file's `world`)."""
        return {
            truths.WORLD_SEED.key: self.seed,
            truths.WORLD_N_GENES.key: self.n_genes,
            truths.HOUSEKEEPING_GENES.key: self.gene_ids[self.housekeeping].tolist(),
            truths.DOSAGE_SENSITIVE_GENES.key: self.gene_ids[self.dosage_sensitive].tolist(),
            truths.DOSAGE_INSENSITIVE_GENES.key: self.gene_ids[self.dosage_insensitive].tolist(),
            truths.PROGRAMS.key: {
                program.name: {
                    "genes": self.gene_ids[program.genes].tolist(),
                    "log_fold_changes": np.round(program.log_fold_changes, 4).tolist(),
                    "strength": round(program.strength, 4),
                }
                for program in self.programs
            },
        }


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
    rng = stream_rng(seed, WORLD_STREAM)
    gene_ids = np.sort(rng.choice(vocabulary_genes(), size=n_genes, replace=False))
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


def world_from_settings(settings: SimulationSettings, seed: int) -> World:
    """The world every dataset of this configuration is drawn from."""
    return build_world(seed, settings.n_genes, settings.n_programs, settings.dosage_genes.n_per_class)


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
    loner_pool = in_expression_band(regulatable, baseline_log_expression, INSENSITIVE_BASELINE_QUANTILES)
    loner_pool = loner_pool[n_memberships[loner_pool] <= 1]
    hub_pool = in_expression_band(regulatable, baseline_log_expression, SENSITIVE_BASELINE_QUANTILES)
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
    proportions = softmax_rows(baseline_log_expression[None, :])[0]
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


def in_expression_band(
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
    return softmax_rows(log_mean)


def softmax_rows(log_mean: np.ndarray) -> np.ndarray:
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    return proportions / proportions.sum(axis=1, keepdims=True)


def assign_program_roles(
    world: World, roles: tuple[str, ...], rng: np.random.Generator
) -> tuple[dict[str, int], np.ndarray]:
    """Seeded choice of the world programs that play each role; returns (program of role, the rest).
    The schema's minimum simulation.n_programs leaves a program for every role of every dataset."""
    program_indices = rng.permutation(len(world.programs))
    return dict(zip(roles, program_indices[: len(roles)].tolist())), np.sort(program_indices[len(roles) :])


def role_names(world: World, program_of_role: dict[str, int]) -> dict[str, str]:
    """Role -> the name of the world program playing it (the truth file's program_of_role)."""
    return {role: world.programs[index].name for role, index in program_of_role.items()}


def program_genes(world: World, program: int, activated: bool) -> list[str]:
    """Ensembl IDs of a program's activated (positive fold change) or repressed genes."""
    genes = world.programs[program].genes
    fold_changes = world.programs[program].log_fold_changes
    return world.gene_ids[genes[fold_changes > 0] if activated else genes[fold_changes < 0]].tolist()
