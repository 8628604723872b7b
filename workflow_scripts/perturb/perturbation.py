"""In silico perturbation, as Geneformer defines it, with a null of random genes (truth.py checks
the results against the simulator's planted truth).

Token edits on rank-value encodings (V1: gene tokens only; V2 encodings, with <cls>, are refused):
- delete: the gene's token is removed from the cell. Only cells holding every perturbed gene are
  perturbed (a cell without the gene would be unchanged).
- overexpress: the gene's token moves to the front of the cell; a gene the cell lacks is inserted at
  the front, and the encoding is cut back to the model's input size (max_position_embeddings), so a
  full cell loses its last gene. Every start-state cell is perturbed, as in Geneformer. Several genes
  (a combination) go to the front in the order given.

Effects, at one layer (default the second-to-last) of the model's token states:
- cell cosine: cosine between the mean state of the genes the edit kept, before and after. The
  original's perturbed positions (and, for overexpression, positions cut off at the end) are left out
  before pooling, and the perturbed cell's front (overexpressed) positions too, so both sides pool
  the same genes. Cell shift = 1 - cell cosine.
- gene shift: 1 - cosine between each kept gene's state before and after. A gene whose position
  changed (downstream of a deleted gene, or between the front and an overexpressed gene's old place)
  also gets a different position embedding, which alone shifts it more than any attention effect
  (in the default model ~27x for the genes after a deleted one); the gene shift table keeps these
  apart: `mean_shift` over every cell, `mean_shift_unmoved` over the cells where the affected gene
  kept its position, the comparison the target tests use.
- goal-state shift: cos(perturbed cell, goal centroid) - cos(original cell, goal centroid), with
  whole-cell embeddings (every position), the goal centroid being the mean embedding of (at most
  max_cells) unperturbed goal-state cells. Positive: the perturbation moves the cell toward the goal.

Statistics: each tested gene's (and combination's) per-cell shifts against the pooled per-cell shifts
of `n_null_genes` random genes (drawn, seeded, from the genes present in at least min_cell_fraction
of the start cells, the genes named by the user excepted) perturbed the same way in the same cells:
two-sided Mann-Whitney U, then Benjamini-Hochberg FDR over the ranked genes (and, separately, over
the combinations); for the cell shift and, with a goal state, the goal shift. A perturbation done in
fewer than `min_cells` cells is reported but not ranked (ranked = False, no p-value): a gene held by
two cells can reach any rank by chance. Geneformer's own statistics compare against the pooled
shifts of all perturbed genes with a rank-sum test.

Combinations: synergy = the joint shift minus the sum of the members' single shifts, over the cells
where the combination and every member were perturbed (for deletion: the cells holding all members).
Its sign alone means little (deleting any two genes is sub-additive in cosine terms), so
`n_null_pairs` random pairs of null genes are perturbed too and each combination's synergy is placed
among theirs (synergy_null_mean, _sd and _percentile). For gene-level synergy the members are also
recorded on the combination's cells only (gene shift rows whose `context` names the combination).

Results table (one row per role and perturbation): kind (gene | combination | random |
random_pair), genes (Ensembl IDs, "+"-joined for combinations), n_cells perturbed, n_cells_holding
(cells holding every gene), ranked, cell_cosine, cell_shift, goal_shift, the random genes' means,
p_/fdr_ for both shifts, member_*_shifts (";"-joined) and synergy / goal_synergy with their null
placement for combinations. Gene shift table: perturbed, context, affected, mean_shift, n_cells,
mean_shift_unmoved, n_cells_unmoved.

Batching: start cells go through the model once per batch of cells (original states kept for that
batch only); every (perturbation, cell) pair of those cells is edited as one ragged array and run in
forward passes of `batch_size` perturbed cells.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.stats import false_discovery_control, mannwhitneyu
from tqdm import tqdm

from ..core import truths
from ..core.batching import RaggedTokens, inference_batches, load_tokenized
from ..core.dictionaries import CLS_TOKEN, SPECIAL_TOKENS, load_token_dictionary
from ..core.encoder import cell_embeddings, encoder, load_encoder_model, token_states
from ..core.errors import InputError
from ..core.model import autocast, pick_device
from ..core.outputs import write_tsv
from .settings import PerturbationSettings
from .tables import (
    COMBINATION,
    GENE,
    JOIN,
)

log = logging.getLogger(__name__)

NULL, NULL_PAIR = "random", "random_pair"  # "null" reads back as NaN
MEMBER_JOIN = ";"


@dataclass(frozen=True)
class Edit:
    """Edited encodings and how they line up with the originals.

    kept: per original token, whether it is still in its edited row; kept tokens keep their order
    and follow the row's n_front perturbed tokens. removed: per row, the original positions that
    are gone (the perturbed genes, and for overexpression any tail cut at the input size).
    n_present: per row, how many of the perturbed genes the original held.
    """

    tokens: RaggedTokens
    kept: np.ndarray
    removed: RaggedTokens
    n_front: np.ndarray
    n_present: np.ndarray


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _row_of_value(tokens: RaggedTokens) -> np.ndarray:
    return np.repeat(np.arange(len(tokens)), tokens.lengths)


def _position_in_row(tokens: RaggedTokens) -> np.ndarray:
    return np.arange(len(tokens.values)) - tokens.offsets[_row_of_value(tokens)]


def _per_row_targets(tokens: RaggedTokens, targets: np.ndarray | list[int] | RaggedTokens) -> RaggedTokens:
    """The perturbed token ids of each row: one set for every row, or a ragged set per row."""
    if isinstance(targets, RaggedTokens):
        if len(targets) != len(tokens):
            raise InputError("perturbation", f"{len(targets)} target sets for {len(tokens)} cells",
                             "give one set of perturbed tokens per cell, or one set for all")
        return targets
    ids = np.asarray(targets, dtype=np.int64).ravel()
    if len(np.unique(ids)) != len(ids):
        raise InputError("perturbation", f"token ids {ids.tolist()} repeat a gene", "perturb each gene once")
    return RaggedTokens(np.tile(ids, len(tokens)), np.arange(len(tokens) + 1, dtype=np.int64) * len(ids))


def _is_target(tokens: RaggedTokens, targets: RaggedTokens) -> np.ndarray:
    """Per token: whether its row's target set holds it (one isin over (row, token) keys)."""
    span = int(max(tokens.values.max(initial=0), targets.values.max(initial=0))) + 1
    keys = _row_of_value(tokens) * span + tokens.values
    return np.isin(keys, _row_of_value(targets) * span + targets.values)


def _edit(tokens: RaggedTokens, targets: RaggedTokens, kept: np.ndarray, n_front: np.ndarray,
          n_present: np.ndarray) -> Edit:
    """Assemble rows as (front targets, kept tokens in order) with one scatter."""
    rows = _row_of_value(tokens)
    n_kept = np.bincount(rows[kept], minlength=len(tokens))
    offsets = _offsets(n_front + n_kept)
    values = np.empty(int(offsets[-1]), dtype=np.int64)
    front_rows = _row_of_value(targets)
    front = np.flatnonzero(_position_in_row(targets) < n_front[front_rows])
    values[offsets[front_rows[front]] + _position_in_row(targets)[front]] = targets.values[front]
    kept_rows = rows[kept]
    rank = np.arange(len(kept_rows)) - _offsets(n_kept)[kept_rows]
    values[offsets[kept_rows] + n_front[kept_rows] + rank] = tokens.values[kept]
    removed_rows = rows[~kept]
    removed = RaggedTokens(_position_in_row(tokens)[~kept],
                           _offsets(np.bincount(removed_rows, minlength=len(tokens))))
    return Edit(RaggedTokens(values, offsets), kept, removed, n_front, n_present)


def delete_tokens(tokens: RaggedTokens, targets: np.ndarray | list[int] | RaggedTokens) -> Edit:
    """Remove the target tokens (one gene or a combination) from every row; a row without them
    stays as it was, with n_present 0."""
    per_row = _per_row_targets(tokens, targets)
    hit = _is_target(tokens, per_row)
    n_present = np.bincount(_row_of_value(tokens)[hit], minlength=len(tokens))
    return _edit(tokens, per_row, ~hit, np.zeros(len(tokens), dtype=np.int64), n_present)


def overexpress_tokens(tokens: RaggedTokens, targets: np.ndarray | list[int] | RaggedTokens,
                       max_length: int) -> Edit:
    """Put the target tokens at the front of every row, in the order given (moved when present,
    inserted when absent), then cut each row to `max_length` tokens: the tail positions cut are
    reported as removed, so the original is compared over the same genes."""
    per_row = _per_row_targets(tokens, targets)
    if len(per_row.values) and per_row.lengths.max() > max_length:
        raise InputError("perturbation", f"{int(per_row.lengths.max())} genes overexpressed at once exceed the "
                         f"model input size {max_length}", "overexpress fewer genes together")
    hit = _is_target(tokens, per_row)
    rows = _row_of_value(tokens)
    n_present = np.bincount(rows[hit], minlength=len(tokens))
    n_front = per_row.lengths.astype(np.int64)
    candidate = ~hit
    rank = np.cumsum(candidate) - 1 - _offsets(np.bincount(rows[candidate], minlength=len(tokens)))[rows]
    kept = candidate & (n_front[rows] + rank < max_length)
    return _edit(tokens, per_row, kept, n_front, n_present)


def _kept_positions(original: RaggedTokens, edit: Edit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each kept gene (in `edit.kept` order): its row, its position before and after the edit."""
    rows = _row_of_value(original)[edit.kept]
    n_kept = np.bincount(rows, minlength=len(original))
    rank = np.arange(len(rows)) - _offsets(n_kept)[rows]
    return rows, _position_in_row(original)[edit.kept], edit.n_front[rows] + rank


def matched_cosines(original_states: torch.Tensor, original_index: np.ndarray, original: RaggedTokens,
                    edit: Edit, perturbed_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Cell cosine per edited row; gene cosine per kept gene (in `edit.kept` order) and whether
    that gene kept its position.

    original_states: (cells x positions x hidden) of the unedited cells; original_index: for each
    row of `original` (the edited rows' originals), its cell in original_states; perturbed_states:
    (rows x positions x hidden) of edit.tokens. Each row pools only its kept genes on both sides
    (the cosine of the sums equals the cosine of the means).
    """
    device = perturbed_states.device
    rows, position_before, position_after = _kept_positions(original, edit)
    before = original_states[torch.as_tensor(original_index[rows], device=device),
                             torch.as_tensor(position_before, device=device)]
    after = perturbed_states[torch.as_tensor(rows, device=device), torch.as_tensor(position_after, device=device)]
    gene_cosine = torch.nn.functional.cosine_similarity(before, after, dim=1)
    row_index = torch.as_tensor(rows, device=device)
    shape = (len(original), before.shape[1])
    before_sum = torch.zeros(shape, device=device, dtype=before.dtype).index_add_(0, row_index, before)
    after_sum = torch.zeros(shape, device=device, dtype=after.dtype).index_add_(0, row_index, after)
    return (torch.nn.functional.cosine_similarity(before_sum, after_sum, dim=1), gene_cosine,
            position_before == position_after)


def null_statistics(values: list[np.ndarray], null_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Mann-Whitney U p of each perturbation's per-cell values against the pooled null
    values, and Benjamini-Hochberg FDR over the perturbations (NaN where a side is empty)."""
    p_values = np.array([
        mannwhitneyu(sample, null_values, alternative="two-sided").pvalue if len(sample) and len(null_values)
        else np.nan
        for sample in values
    ], dtype=np.float64)
    fdr = np.full(len(p_values), np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        fdr[finite] = false_discovery_control(p_values[finite], method="bh")
    return p_values, fdr


@dataclass(frozen=True)
class Plan:
    """What to perturb: each perturbation's tokens (ragged), and its role(s) in the output."""

    tokens: RaggedTokens
    labels: list[str]  # Ensembl IDs, JOIN-ed for combinations
    kinds: list[set[str]]
    members: list[list[int]]  # combinations: the perturbation index of each member; else []


def _sample(mask: np.ndarray, max_cells: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.flatnonzero(mask)
    return np.sort(rng.choice(rows, size=min(max_cells, len(rows)), replace=False))


def _state_labels(dataset, state_column: str, source: str) -> np.ndarray:
    if state_column not in dataset.column_names:
        raise InputError(source, f"no column '{state_column}' (columns: {', '.join(dataset.column_names)})",
                         "tokenize with the state column in obs_columns, or fix state_column")
    return np.asarray(dataset[state_column], dtype=object).astype(str)


def _load_encoder(checkpoint: str | Path, vocab_size: int, seed: int) -> torch.nn.Module:
    """The BERT encoder of a masked-LM or classifier checkpoint (embeddings.load_encoder_model), checked
    to cover the token dictionary's ids."""
    model = encoder(load_encoder_model(checkpoint, "pretrained", seed)).eval()
    if model.config.vocab_size < vocab_size:
        raise InputError(str(checkpoint), f"vocabulary of {model.config.vocab_size} tokens is smaller than the token "
                         f"dictionary's {vocab_size}", "use the token dictionary the model was trained with")
    return model


def _token_ids(genes: list[str], token_of_gene: dict[str, int], source: str) -> list[int]:
    unknown = [gene for gene in genes if gene not in token_of_gene]
    if unknown:
        raise InputError(source, f"genes not in the token dictionary: {', '.join(unknown[:5])}",
                         "give Ensembl IDs of the model's vocabulary (map symbols with the gene name dictionary)")
    return [token_of_gene[gene] for gene in genes]


def plan_perturbations(presence: np.ndarray, n_cells: int, gene_of_token: dict[int, str], genes: list[str],
                       combinations: list[list[str]], max_genes: int, min_cell_fraction: float, n_null_genes: int,
                       n_null_pairs: int, rng: np.random.Generator) -> Plan:
    """Tested genes: the given ones (planted genes are often rare in a short encoding, so they must
    be named), the combination members, and the max_genes genes present in the most start cells (in
    at least min_cell_fraction of them; the genes they are ranked against). Then the combinations,
    the null genes and up to n_null_pairs distinct pairs of null genes (the combinations' null);
    each perturbation is listed once."""
    token_of_gene = {gene: token for token, gene in gene_of_token.items()}
    candidates = np.array(sorted(gene_of_token), dtype=np.int64)
    candidates = candidates[candidates < len(presence)]
    frequent = candidates[presence[candidates] >= max(1.0, min_cell_fraction * n_cells)]
    frequent = frequent[np.lexsort((frequent, -presence[frequent]))]
    combination_tokens = [_token_ids(combination, token_of_gene, "combinations") for combination in combinations]
    for combination in combination_tokens:
        if len(set(combination)) != len(combination):
            raise InputError("combinations", f"{combination} names a gene twice",
                             "name each gene of a combination once")
    named = _token_ids(genes, token_of_gene, "genes")
    members = [token for combination in combination_tokens for token in combination]
    tested = list(dict.fromkeys(named + members + frequent[:max_genes].tolist()))
    if not tested:
        raise InputError("genes", f"no gene is present in {min_cell_fraction:.0%} of the start cells and none is named",
                         "name genes, lower min_cell_fraction or raise max_genes")
    pool = np.setdiff1d(frequent, named + members)
    if n_null_genes > 0 and len(pool) == 0:
        raise InputError("n_null_genes", f"no gene outside the named ones is present in {min_cell_fraction:.0%} "
                         "of the start cells", "lower min_cell_fraction or raise max_cells")
    if len(pool) < n_null_genes:
        log.warning("only %d genes for a null of %d", len(pool), n_null_genes)
    null = rng.choice(pool, size=min(n_null_genes, len(pool)), replace=False).tolist() if n_null_genes else []
    null_pairs = _random_pairs(null, n_null_pairs, rng)

    kinds_of: dict[tuple[int, ...], set[str]] = {}  # insertion-ordered: a perturbation's index is its place
    for key, kind in [((token,), GENE) for token in tested] + [((token,), NULL) for token in null] + \
            [(tuple(combination), COMBINATION) for combination in combination_tokens] + \
            [(pair, NULL_PAIR) for pair in null_pairs]:
        kinds_of.setdefault(key, set()).add(kind)
    keys = list(kinds_of)
    index_of = {key: index for index, key in enumerate(keys)}
    values = np.array([token for key in keys for token in key], dtype=np.int64)
    return Plan(
        RaggedTokens(values, _offsets(np.array([len(key) for key in keys]))),
        [JOIN.join(gene_of_token[token] for token in key) for key in keys],
        list(kinds_of.values()),
        [[index_of[(token,)] for token in key] if len(key) > 1 else [] for key in keys],
    )


def _random_pairs(genes: list[int], n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to n_pairs distinct unordered pairs of `genes`, drawn (seeded) without replacement."""
    first, second = np.triu_indices(len(genes), k=1)
    if n_pairs == 0 or len(first) == 0:
        return []
    chosen = np.sort(rng.choice(len(first), size=min(n_pairs, len(first)), replace=False))
    return [(genes[i], genes[j]) for i, j in zip(first[chosen], second[chosen])]


def _jobs(cells: RaggedTokens, plan: Plan, direction: str, vocab_span: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(perturbation, cell) pairs, and per perturbation the cells holding all its genes. Deletion
    runs in the cells holding every perturbed gene and keeping at least one other; overexpression
    in every cell."""
    incidence = sp.csr_matrix((np.ones(len(cells.values)), (_row_of_value(cells), cells.values)),
                              shape=(len(cells), vocab_span))
    membership = sp.csr_matrix((np.ones(len(plan.tokens.values)), (plan.tokens.values, _row_of_value(plan.tokens))),
                               shape=(vocab_span, len(plan.tokens)))
    size = plan.tokens.lengths[None, :]
    holds_all = (incidence @ membership).toarray() == size  # cells x perturbations
    applies = holds_all & (cells.lengths[:, None] > size) if direction == "delete" else np.ones_like(holds_all)
    perturbation, cell = np.nonzero(applies.T)
    return perturbation, cell, holds_all.sum(axis=0)


def _job_records(plan: Plan, job_perturbation: np.ndarray, job_cell: np.ndarray, n_cells: int
                 ) -> tuple[RaggedTokens, list[tuple[str, str]]]:
    """The gene-shift records each job adds to (ragged, one row per job) and each record's
    (perturbed, context): a tested gene or combination on all its cells (context ""), and each
    member of a combination again on the combination's cells only (context = the combination)."""
    own = [index for index, kinds in enumerate(plan.kinds) if kinds & {GENE, COMBINATION}]
    record_of = np.full(len(plan.labels), -1, dtype=np.int64)
    record_of[own] = np.arange(len(own))
    labels = [(plan.labels[index], "") for index in own]
    is_own = record_of[job_perturbation] >= 0
    jobs, records = [np.flatnonzero(is_own)], [record_of[job_perturbation[is_own]]]
    job_key = job_perturbation * n_cells + job_cell  # increasing: jobs come sorted by perturbation, then cell
    for combination in (index for index, kinds in enumerate(plan.kinds) if COMBINATION in kinds):
        cells = job_cell[job_perturbation == combination]
        for member in plan.members[combination]:
            jobs.append(np.searchsorted(job_key, member * n_cells + cells))  # a member runs wherever its set does
            records.append(np.full(len(cells), len(labels)))
            labels.append((plan.labels[member], plan.labels[combination]))
    job, record = np.concatenate(jobs), np.concatenate(records)
    order = np.argsort(job, kind="stable")
    return RaggedTokens(record[order], _offsets(np.bincount(job, minlength=len(job_cell)))), labels


def _edit_cells(direction: str, originals: RaggedTokens, targets: RaggedTokens, max_length: int) -> Edit:
    if direction == "delete":
        return delete_tokens(originals, targets)
    return overexpress_tokens(originals, targets, max_length)


@torch.no_grad()
def run_jobs(model: torch.nn.Module, cells: RaggedTokens, plan: Plan, job_perturbation: np.ndarray,
             job_cell: np.ndarray, direction: str, max_length: int, goal_centroid: torch.Tensor | None,
             job_records: RaggedTokens, n_records: int, vocab_span: int, layer: int, batch_size: int,
             device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per job: cell cosine and goal shift (NaN without a goal). Per (record, affected token), for
    all cells [0] and for the cells where the affected gene kept its position [1]: summed gene shift
    and cell count (shape 2 x records x vocab_span each)."""
    shift_sums = torch.zeros(2 * n_records * vocab_span, dtype=torch.float64, device=device)
    shift_counts = torch.zeros(2 * n_records * vocab_span, dtype=torch.float64, device=device)
    cell_cosine = np.full(len(job_cell), np.nan)
    goal_shift = np.full(len(job_cell), np.nan)
    cell_batches = inference_batches(cells.lengths, batch_size)
    batch_of_cell = np.empty(len(cells), dtype=np.int64)
    for number, batch in enumerate(cell_batches):
        batch_of_cell[batch] = number
    job_order = np.argsort(batch_of_cell[job_cell], kind="stable")
    job_splits = np.split(job_order, np.cumsum(np.bincount(batch_of_cell[job_cell], minlength=len(cell_batches)))[:-1])
    progress = tqdm(total=len(job_cell), desc=f"{direction} perturbations", unit="cell", mininterval=5)
    for batch, jobs_of_batch in zip(cell_batches, job_splits):
        local_of_cell = np.full(len(cells), -1, dtype=np.int64)
        local_of_cell[batch] = np.arange(len(batch))
        input_ids, attention_mask = cells.padded(batch)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with autocast(device):
            original_states = token_states(model, input_ids, attention_mask, layer)
        original_cosine_to_goal = None
        if goal_centroid is not None:
            original_embeddings = cell_embeddings(original_states, attention_mask, cls_first=False)
            original_cosine_to_goal = torch.nn.functional.cosine_similarity(original_embeddings, goal_centroid[None])
        for start in range(0, len(jobs_of_batch), batch_size):
            jobs = jobs_of_batch[start:start + batch_size]
            originals = cells.subset(job_cell[jobs])
            edit = _edit_cells(direction, originals, plan.tokens.subset(job_perturbation[jobs]), max_length)
            ids, mask = edit.tokens.padded(np.arange(len(jobs)))
            ids, mask = ids.to(device), mask.to(device)
            with autocast(device):
                perturbed_states = token_states(model, ids, mask, layer)
            local = local_of_cell[job_cell[jobs]]
            cosine, gene_cosine, unmoved = matched_cosines(original_states, local, originals, edit, perturbed_states)
            cell_cosine[jobs] = cosine.cpu().numpy()
            if goal_centroid is not None:
                perturbed_embeddings = cell_embeddings(perturbed_states, mask, cls_first=False)
                to_goal = torch.nn.functional.cosine_similarity(perturbed_embeddings, goal_centroid[None])
                before = original_cosine_to_goal[torch.as_tensor(local, device=device)]
                goal_shift[jobs] = (to_goal - before).cpu().numpy()
            records = job_records.subset(jobs)
            if len(records.values):
                kept_of_row = RaggedTokens(np.arange(len(gene_cosine)), _offsets(
                    np.bincount(_row_of_value(originals)[edit.kept], minlength=len(jobs))))
                gathered = kept_of_row.subset(_row_of_value(records))
                record = np.repeat(records.values, kept_of_row.lengths[_row_of_value(records)])
                key = record * vocab_span + originals.values[edit.kept][gathered.values]
                key = np.concatenate([key, (n_records * vocab_span + key)[unmoved[gathered.values]]])
                shift = (1.0 - gene_cosine).double()[torch.as_tensor(gathered.values, device=device)]
                shift = torch.cat([shift, shift[torch.as_tensor(unmoved[gathered.values], device=device)]])
                key = torch.as_tensor(key, device=device)
                shift_sums.index_add_(0, key, shift)
                shift_counts.index_add_(0, key, torch.ones_like(shift))
            progress.update(len(jobs))
    progress.close()
    return (cell_cosine, goal_shift, shift_sums.cpu().numpy().reshape(2, n_records, vocab_span),
            shift_counts.cpu().numpy().reshape(2, n_records, vocab_span))


def _segments(values: np.ndarray, job_perturbation: np.ndarray, n_perturbations: int) -> list[np.ndarray]:
    order = np.argsort(job_perturbation, kind="stable")
    return np.split(values[order], np.cumsum(np.bincount(job_perturbation, minlength=n_perturbations))[:-1])


def _results_table(plan: Plan, job_perturbation: np.ndarray, job_cell: np.ndarray, n_cells: int,
                   cell_cosine: np.ndarray, goal_shift: np.ndarray, n_holding: np.ndarray,
                   has_goal: bool, min_cells: int) -> pd.DataFrame:
    """One row per (role, perturbation): means, null comparison, and synergy for combinations."""
    n_perturbations = len(plan.labels)
    cell_shift = 1.0 - cell_cosine
    by_cell = {name: np.full((n_perturbations, n_cells), np.nan) for name in ("cell", "goal")}
    by_cell["cell"][job_perturbation, job_cell] = cell_shift
    by_cell["goal"][job_perturbation, job_cell] = goal_shift
    cell_cosines = _segments(cell_cosine, job_perturbation, n_perturbations)
    cell_shifts = _segments(cell_shift, job_perturbation, n_perturbations)
    goal_shifts = _segments(goal_shift, job_perturbation, n_perturbations)
    is_null = np.array([NULL in kinds for kinds in plan.kinds])
    null_cell = np.concatenate([cell_shifts[i] for i in np.flatnonzero(is_null)] or [np.array([])])
    null_goal = np.concatenate([goal_shifts[i] for i in np.flatnonzero(is_null)] or [np.array([])])
    rows = []
    for kind in (GENE, COMBINATION, NULL, NULL_PAIR):
        chosen = [i for i in range(n_perturbations) if kind in plan.kinds[i]]
        n_cells_of = np.array([len(cell_shifts[i]) for i in chosen], dtype=np.int64)
        table = pd.DataFrame({
            "kind": kind,
            "genes": [plan.labels[i] for i in chosen],
            "n_genes": plan.tokens.lengths[chosen],
            "n_cells": n_cells_of,
            "n_cells_holding": n_holding[chosen],
            "ranked": n_cells_of >= min_cells,
            "cell_cosine": [np.mean(cell_cosines[i]) if len(cell_cosines[i]) else np.nan for i in chosen],
        })
        table["cell_shift"] = 1.0 - table["cell_cosine"]
        table["goal_shift"] = [np.mean(goal_shifts[i]) if has_goal and len(goal_shifts[i]) else np.nan
                               for i in chosen]
        table["cell_shift_null_mean"] = np.mean(null_cell) if len(null_cell) else np.nan
        table["goal_shift_null_mean"] = np.mean(null_goal) if has_goal and len(null_goal) else np.nan
        for name, shifts, null, wanted in (("cell_shift", cell_shifts, null_cell, True),
                                           ("goal_shift", goal_shifts, null_goal, has_goal)):
            table[f"p_{name}"], table[f"fdr_{name}"] = np.nan, np.nan
            ranked = np.flatnonzero(table["ranked"].to_numpy()) if wanted and kind in (GENE, COMBINATION) else []
            if len(ranked):
                table.loc[ranked, f"p_{name}"], table.loc[ranked, f"fdr_{name}"] = null_statistics(
                    [shifts[chosen[i]] for i in ranked], null)
        for name, column in (("cell", "synergy"), ("goal", "goal_synergy")):
            table[f"member_{name}_shifts"], table[column] = zip(
                *[_synergy(by_cell[name], i, plan.members[i]) for i in chosen]) if chosen else ([], [])
        rows.append(table)
    results = pd.concat(rows, ignore_index=True)
    for column in ("synergy", "goal_synergy"):
        null_synergy = results.loc[results["kind"] == NULL_PAIR, column].dropna().to_numpy()
        results[f"{column}_null_mean"] = np.mean(null_synergy) if len(null_synergy) else np.nan
        results[f"{column}_null_sd"] = np.std(null_synergy, ddof=1) if len(null_synergy) > 1 else np.nan
        results[f"{column}_percentile"] = [
            100.0 * np.mean(null_synergy <= value) if len(null_synergy) and np.isfinite(value) else np.nan
            for value in results[column]]
    return results


def _synergy(by_cell: np.ndarray, combination: int, members: list[int]) -> tuple[str, float]:
    """Members' mean single shifts on the combination's cells (MEMBER_JOIN-ed) and the joint shift
    minus their sum, over the cells where the combination and every member were perturbed."""
    if not members:
        return "", np.nan
    cells = np.isfinite(by_cell[combination]) & np.isfinite(by_cell[members]).all(axis=0)
    if not cells.any():
        return "", np.nan
    singles = by_cell[members][:, cells].mean(axis=1)
    joint = by_cell[combination, cells].mean()
    return MEMBER_JOIN.join(f"{value:.6g}" for value in singles), float(joint - singles.sum())


def _gene_shift_table(labels: list[tuple[str, str]], sums: np.ndarray, counts: np.ndarray,
                      gene_of_token: dict[int, str]) -> pd.DataFrame:
    """One row per (record, affected gene) seen: mean shift over all its cells and over the cells
    where it kept its position (run_jobs' sums and counts, [all, unmoved])."""
    record, token = np.nonzero(counts[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[:, record, token] / counts[:, record, token]
    perturbed, context = (np.asarray([label[part] for label in labels], dtype=object)[record] if len(record)
                          else [] for part in (0, 1))
    table = pd.DataFrame({
        "perturbed": perturbed,
        "context": context,
        "affected": np.array([gene_of_token.get(int(t), str(t)) for t in token], dtype=object),
        "mean_shift": means[0],
        "n_cells": counts[0, record, token].astype(np.int64),
        "mean_shift_unmoved": means[1],
        "n_cells_unmoved": counts[1, record, token].astype(np.int64),
    })
    return table.sort_values(["perturbed", "context", "mean_shift"], ascending=[True, True, False], ignore_index=True)


def run_perturbation(checkpoint: str | Path, tokenized_dir: str | Path, token_dictionary_tsv: str | Path,
                     settings: PerturbationSettings, analysis: str, seed: int, output_tsv: str | Path,
                     output_gene_shifts_tsv: str | Path, threads: int = 1, gpus: int | None = None,
                     truth_json: str | Path | None = None) -> None:
    """Run one analysis of settings.analyses (named in the tables): perturb tested genes, combinations
    and null genes in (at most max_cells, seeded) start-state cells; write per-perturbation effects
    with null statistics (output_tsv), and the mean shift of every other gene for the tested genes
    and combinations (output_gene_shifts_tsv).

    Tested genes: settings.genes (Ensembl IDs), the combination members, and the max_genes genes
    present in the most start cells (at least min_cell_fraction of them; 0 tests only the named
    ones). The goal centroid uses at most max_cells goal-state cells. `threads`, `gpus` as in
    fine-tuning (see model.pick_device). truth_json (a simulator truth file): its planted driver,
    pair members and control genes join the genes, and the pair joins the combinations, so that a
    rule need not read the file before it exists."""
    if analysis not in settings.analyses:
        raise InputError("analysis", f"'{analysis}' is not an analysis of the settings ({list(settings.analyses)})",
                         "name one of perturbation.analyses")
    run = settings.analyses[analysis]
    start_state, goal_state, direction = run.start_state, run.goal_state, run.direction
    genes, combinations = settings.genes, settings.combinations
    if truth_json is not None:
        genes, combinations = _with_planted_genes(genes, combinations, truth_json)
    torch.set_num_threads(threads)
    source = str(tokenized_dir)
    tokens, dataset = load_tokenized(tokenized_dir)
    states = _state_labels(dataset, settings.state_column, source)
    vocabulary = load_token_dictionary(str(token_dictionary_tsv))
    if CLS_TOKEN in vocabulary and (tokens.values == vocabulary[CLS_TOKEN]).any():
        raise InputError(source, "cells start with <cls> (Geneformer V2 encoding)",
                         "perturb V1 encodings (tokenizer.special_tokens: false)")
    gene_of_token = {token: gene for gene, token in vocabulary.items() if gene not in SPECIAL_TOKENS}
    rng = np.random.default_rng(seed)
    for state in (start_state, goal_state):
        if state is not None and not (states == state).any():
            raise InputError(source, f"no cell has {settings.state_column} '{state}' (values: {sorted(set(states))})",
                             "fix start_state / goal_state")
    start_rows = _sample(states == start_state, settings.max_cells, rng)
    cells = tokens.subset(start_rows)
    vocab_span = max(vocabulary.values()) + 1
    presence = np.bincount(cells.values, minlength=vocab_span)
    plan = plan_perturbations(presence, len(cells), gene_of_token, genes, combinations, settings.max_genes,
                              settings.min_cell_fraction, settings.n_null_genes, settings.n_null_pairs, rng)
    model = _load_encoder(checkpoint, vocab_span, seed)
    max_length = model.config.max_position_embeddings
    device = pick_device(gpus)
    model.to(device)
    goal_centroid = None
    if goal_state is not None:
        goal_centroid = _centroid(model, tokens.subset(_sample(states == goal_state, settings.max_cells, rng)),
                                  settings.layer, settings.batch_size, device)
    job_perturbation, job_cell, n_holding = _jobs(cells, plan, direction, vocab_span)
    if direction == "delete" and (n_holding == 0).any():
        log.warning("no %s cell holds %s: nothing to delete", start_state,
                    ", ".join(np.asarray(plan.labels)[n_holding == 0][:10]))
    job_records, record_labels = _job_records(plan, job_perturbation, job_cell, len(cells))
    log.info("%s: %d perturbations (%d tested genes, %d combinations, %d null genes, %d null pairs) in %d %s cells, "
             "%d forward cells", direction, len(plan.labels), *(sum(kind in k for k in plan.kinds)
                                                                 for kind in (GENE, COMBINATION, NULL, NULL_PAIR)),
             len(cells), start_state, len(job_cell))
    cell_cosine, goal_shift, sums, counts = run_jobs(
        model, cells, plan, job_perturbation, job_cell, direction, max_length, goal_centroid,
        job_records, len(record_labels), vocab_span, settings.layer, settings.batch_size, device)
    results = _results_table(plan, job_perturbation, job_cell, len(cells), cell_cosine, goal_shift, n_holding,
                             goal_state is not None, settings.min_cells)
    for place, (column, value) in enumerate({"analysis": analysis, "direction": direction, "start_state": start_state,
                                             "goal_state": goal_state or ""}.items()):
        results.insert(place, column, value)
    write_tsv(results, output_tsv, float_format="%.6g")
    write_tsv(_gene_shift_table(record_labels, sums, counts, gene_of_token), output_gene_shifts_tsv,
              float_format="%.6g")


def _with_planted_genes(genes: list[str] | None, combinations: list[list[str]], truth_json: str | Path
                        ) -> tuple[list[str], list[list[str]]]:
    """`genes` and `combinations` with the simulator's planted genes and pair added (once)."""
    truth = json.loads(Path(truth_json).read_text())
    if not (truths.DRIVER.held_by(truth) and truths.COOPERATING_PAIR.held_by(truth)):
        raise InputError(str(truth_json), "holds no planted driver / cooperating pair",
                         "use the truth file of the simulated cardiomyocytes, or leave truth_json out")
    pair = truths.PAIR_GENES.read(truth)
    planted = [truths.DRIVER_GENE.read(truth), *pair, *truths.CONTROL_GENES.read(truth)]
    known = {tuple(sorted(combination)) for combination in combinations}
    return (list(dict.fromkeys([*(genes or []), *planted])),
            [*combinations, *([pair] if tuple(sorted(pair)) not in known else [])])


@torch.no_grad()
def _centroid(model: torch.nn.Module, cells: RaggedTokens, layer: int, batch_size: int,
              device: torch.device) -> torch.Tensor:
    """Mean cell embedding of unperturbed cells (the goal state)."""
    total = torch.zeros(model.config.hidden_size, device=device)
    for batch in inference_batches(cells.lengths, batch_size):
        input_ids, attention_mask = (tensor.to(device) for tensor in cells.padded(batch))
        with autocast(device):
            states = token_states(model, input_ids, attention_mask, layer)
        total += cell_embeddings(states, attention_mask, cls_first=False).sum(dim=0)
    return total / len(cells)
