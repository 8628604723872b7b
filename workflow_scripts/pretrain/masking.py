"""Which gene tokens masked-LM pretraining hides, and how it corrupts them.

Selection (`pretraining.masking.strategy`):
- random: each gene token independently with probability `mask_probability` (BERT, Geneformer).
- pathway: whole gene sets (a GMT file's, e.g. pathways or the simulator's gene programs). Per cell,
  the gene sets it holds are taken in random order until about `mask_probability` of its gene tokens
  are covered (the prefix whose coverage is closest to the target, at least one set); every token of
  a chosen set is selected. A gene in no set counts as a set of its own, so every gene can be a
  target and the rate holds in cells with few set genes.

Corruption of the selected tokens: `mask_token_fraction` become <mask>, `random_token_fraction` a
random gene token, the rest stay (80/10/10 in BERT and Geneformer; 80/2/18 in BioNeMo's Geneformer).
Special and padding tokens are never selected.

Rate (`schedule`): constant `mask_probability`, or linear from `start_probability` to
`end_probability` over training, by the share of training cells seen (dynamic masking: hard early,
easier later). Held-out
losses always use the random strategy at the constant `mask_probability`, so runs compare.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..core.dictionaries import (
    MASK_TOKEN,
    SPECIAL_TOKENS,
    load_gene_name_dictionary,
    map_gene_symbols,
)
from ..core.errors import InputError
from .settings import MaskingSettings

log = logging.getLogger(__name__)

SIMULATED_PROGRAMS = "simulated"  # pretraining.masking.gene_sets: the simulator's gene programs


def mask_tokens(input_ids: torch.Tensor, maskable: torch.Tensor, settings: MaskingSettings, mask_id: int,
                gene_ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (corrupted input ids, selected positions) for BERT-style masking: every maskable token
    selected with probability settings.mask_probability, then corrupted (see `corrupt`)."""
    selected = (torch.rand(input_ids.shape, generator=generator) < settings.mask_probability) & maskable
    return corrupt(input_ids, selected, settings, mask_id, gene_ids, generator), selected


def corrupt(input_ids: torch.Tensor, selected: torch.Tensor, settings: MaskingSettings, mask_id: int,
            gene_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Selected tokens: <mask> (mask_token_fraction), a random gene (random_token_fraction), or kept."""
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (action < settings.mask_token_fraction)
    to_random = selected & ~to_mask & (action < settings.mask_token_fraction + settings.random_token_fraction)
    corrupted = input_ids.clone()
    corrupted[to_mask] = mask_id
    random_picks = torch.randint(len(gene_ids), input_ids.shape, generator=generator)
    corrupted[to_random] = gene_ids[random_picks[to_random]]
    return corrupted


def masking_rate(settings: MaskingSettings, progress: float) -> float:
    """The selection probability once `progress` (0 at the start, 1 at the end) of training is done."""
    if settings.schedule == "constant":
        return settings.mask_probability
    progress = min(max(progress, 0.0), 1.0)
    return settings.start_probability + (settings.end_probability - settings.start_probability) * progress


def evaluation_settings(settings: MaskingSettings) -> MaskingSettings:
    """The same corruption mix, random selection at the constant mask_probability: what held-out
    losses use, so that a strategy or schedule does not change the yardstick."""
    return replace(settings, strategy="random", schedule="constant")


# --- gene sets ---------------------------------------------------------------------------------------


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Gene sets of a GMT file (name<TAB>description<TAB>gene<TAB>gene...; one set per line)."""
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3 or not fields[0]:
            raise InputError(f"{path}, line {number}", "is not name<TAB>description<TAB>gene...",
                             "write one gene set per line in GMT format (tab-separated)")
        sets[fields[0]] = [gene.strip() for gene in fields[2:] if gene.strip()]
    if not sets:
        raise InputError(str(path), "holds no gene sets", "give a GMT file with at least one gene set")
    return sets


@dataclass(frozen=True)
class GeneSets:
    """Gene sets over a vocabulary: a sparse (unit x token id) membership matrix whose units are the
    file's sets (those with a gene in the vocabulary) followed by one unit per gene token in no set."""

    names: list[str]
    membership: torch.Tensor  # sparse COO float, units x vocabulary size


def gene_sets_for_vocabulary(sets: dict[str, list[str]], vocabulary: dict[str, int], source: str) -> GeneSets:
    """Map gene sets (Ensembl IDs, versioned Ensembl IDs or gene symbols) onto token ids."""
    names, unit_of, token_of = [], [], []
    all_genes = [gene for genes in sets.values() for gene in genes]
    ensembl_ids, _ = map_gene_symbols(all_genes, load_gene_name_dictionary())
    starts = np.cumsum([0] + [len(genes) for genes in sets.values()])
    for (name, genes), start in zip(sets.items(), starts[:-1], strict=True):
        tokens = {vocabulary[gene] for gene in ensembl_ids[start:start + len(genes)] if gene in vocabulary}
        if tokens:
            unit_of += [len(names)] * len(tokens)
            token_of += sorted(tokens)
            names.append(name)
    if not names:
        raise InputError(source, "no gene set names a gene of the token dictionary",
                         "use gene sets of Ensembl IDs (or symbols) of the genes the model is trained on")
    in_sets = set(token_of)
    loners = sorted(token for gene, token in vocabulary.items() if gene not in SPECIAL_TOKENS and token not in in_sets)
    unit_of += list(range(len(names), len(names) + len(loners)))
    token_of += loners
    log.info("%d of %d gene sets hold %d of the vocabulary's genes; %d genes are sets of their own",
             len(names), len(sets), len(in_sets), len(loners))
    membership = torch.sparse_coo_tensor(torch.tensor([unit_of, token_of]), torch.ones(len(token_of)),
                                         (len(names) + len(loners), max(vocabulary.values()) + 1),
                                         check_invariants=True).coalesce()
    return GeneSets(names, membership)


def select_gene_sets(input_ids: torch.Tensor, maskable: torch.Tensor, gene_sets: GeneSets, probability: float,
                     generator: torch.Generator) -> torch.Tensor:
    """Selected positions (batch x positions) for pathway masking, for the whole batch at once.

    Coverage of each (cell, set) = the cell's maskable tokens in the set; sets present in a cell get
    random keys, are sorted by them, and the prefix whose cumulative coverage is closest to
    probability x the cell's maskable tokens is chosen (overlapping sets count shared genes twice).
    """
    n_cells = input_ids.shape[0]
    rows, positions = torch.nonzero(maskable, as_tuple=True)
    counts = torch.zeros(n_cells, gene_sets.membership.shape[1])
    counts.index_put_((rows, input_ids[rows, positions]), torch.ones(len(rows)), accumulate=True)
    coverage = torch.sparse.mm(gene_sets.membership, counts.T).T  # cells x units
    keys = torch.rand(coverage.shape, generator=generator).masked_fill(coverage == 0, float("inf"))
    order = torch.argsort(keys, dim=1)
    covered = torch.cumsum(torch.gather(coverage, 1, order), dim=1)
    target = probability * maskable.sum(dim=1, keepdim=True)
    last = torch.argmin((covered - target).abs(), dim=1, keepdim=True)  # first of equals: the shortest prefix
    chosen_in_order = (torch.arange(coverage.shape[1]) <= last) & (torch.gather(coverage, 1, order) > 0)
    chosen = torch.zeros_like(chosen_in_order).scatter(1, order, chosen_in_order)
    hits = torch.sparse.mm(gene_sets.membership.t(), chosen.float().T)  # vocabulary x cells
    return (hits[input_ids, torch.arange(n_cells).unsqueeze(1)] > 0) & maskable


# --- one object per run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Masking:
    """A strategy bound to a vocabulary: call it on a batch to get (corrupted ids, selected positions)."""

    settings: MaskingSettings
    mask_id: int
    gene_ids: torch.Tensor
    maskable_lookup: torch.Tensor
    gene_sets: GeneSets | None = None

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator,
                 probability: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        maskable = self.maskable_lookup[input_ids] & attention_mask.bool()
        settings = self.settings if probability is None else replace(self.settings, mask_probability=probability)
        if self.settings.strategy == "random":
            return mask_tokens(input_ids, maskable, settings, self.mask_id, self.gene_ids, generator)
        selected = select_gene_sets(input_ids, maskable, self.gene_sets, settings.mask_probability, generator)
        return corrupt(input_ids, selected, settings, self.mask_id, self.gene_ids, generator), selected


def check_masking_settings(settings: MaskingSettings, source: str = "pretraining.masking") -> None:
    """Refuse what the schema cannot: corruption fractions summing to more than 1."""
    if settings.mask_token_fraction + settings.random_token_fraction > 1:
        raise InputError(source, f"mask_token_fraction {settings.mask_token_fraction} + random_token_fraction "
                         f"{settings.random_token_fraction} > 1", "make the two fractions sum to at most 1")


def build_masking(settings: MaskingSettings, vocabulary: dict[str, int], gene_sets_gmt: str | Path | None = None
                  ) -> Masking:
    """The masking `settings` (pretraining.masking) describe, over `vocabulary` (token -> id)."""
    check_masking_settings(settings)
    special_ids = {vocabulary[token] for token in SPECIAL_TOKENS if token in vocabulary}
    gene_ids = torch.tensor(sorted(set(vocabulary.values()) - special_ids))
    maskable_lookup = torch.ones(max(vocabulary.values()) + 1, dtype=torch.bool)
    maskable_lookup[list(special_ids)] = False
    gene_sets = None
    if settings.strategy == "pathway":
        if gene_sets_gmt is None:
            raise InputError("pretraining.masking.gene_sets", "pathway masking needs a gene set file",
                             f"set gene_sets to a GMT file or {SIMULATED_PROGRAMS!r}")
        gene_sets = gene_sets_for_vocabulary(read_gmt(gene_sets_gmt), vocabulary, str(gene_sets_gmt))
    return Masking(settings, vocabulary[MASK_TOKEN], gene_ids, maskable_lookup, gene_sets)
