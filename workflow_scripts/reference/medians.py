"""Gene medians computed from a corpus, and the token/median reference the tokenizer uses.

Geneformer divides each gene's normalized expression (count / n_counts * 10,000) by that gene's
non-zero median over a corpus, so housekeeping genes that are high everywhere rank below genes
that are high only where they matter. Geneformer estimated those medians with t-digests; here
they are exact (numpy's median: the mean of the two middle values for an even count).

An exact median normally needs every value of a gene in memory, which grows with the number of
cells. Instead the file is streamed several times and each gene's middle order statistics are
narrowed down by selection on the values' float64 bit patterns (for positive floats, bit-pattern
order is numeric order, and equal-width bins over bit patterns are close to logarithmic bins):

1. one pass: per gene, number of non-zero cells and the smallest and largest value;
2. histogram passes: each middle order statistic (two for an even count) keeps an interval of
   bit patterns that holds it; the interval's values are counted in bins and the interval shrinks
   to the bin holding the wanted rank. Repeated while an interval still holds many values;
3. one collect pass: the few values left in each interval (at most COLLECT_CAP) are gathered
   and sorted.

At any time the selection holds at most about SELECTION_BUDGET numbers (histogram cells or
collected values) plus per-gene arrays and one chunk, whatever the number of cells. On typical
corpora one histogram pass is enough (two for ~60,000 detections per gene).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.counts import iter_count_chunks, normalized_entries, read_gene_ids
from ..core.dictionaries import (
    CLS_TOKEN,
    EOS_TOKEN,
    MASK_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    load_median_dictionary,
    load_token_dictionary,
)
from ..core.errors import InputError
from ..core.outputs import write_tsv
from ..core.sections import TokenizerSettings
from .settings import BUILTIN_REFERENCES, CORPUS, ReferenceSettings

log = logging.getLogger(__name__)

SELECTION_BUDGET = 1 << 23  # numbers held by one selection pass (64 MiB of int64)
MIN_BINS, MAX_BINS = 16, 1024
COLLECT_CAP = 128  # values per order statistic left for the final sort; more are narrowed by a histogram first
MIN_SHARED_FRACTION = 0.5  # of the smaller gene set; below this the dictionaries do not belong together


class _Targets:
    """The middle order statistics being searched: one per detected gene, a second for even counts.

    Each target t looks for the value of rank `rank[t]` (0-based) among the `count[t]` values of
    gene `gene[t]` whose bit patterns lie in [low[t], high[t]].
    """

    def __init__(self, n_nonzero: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        detected = np.flatnonzero(n_nonzero > 0)
        even = detected[n_nonzero[detected] % 2 == 0]
        self.n_genes = n_nonzero.size
        self.gene = np.concatenate([detected, even])
        self.slot = np.repeat([0, 1], [detected.size, even.size])  # lower / upper middle value
        self.rank = np.concatenate([(n_nonzero[detected] - 1) // 2, n_nonzero[even] // 2])
        self.count = n_nonzero[self.gene].copy()
        self.low = low[self.gene].copy()
        self.high = high[self.gene].copy()

    def gene_lookup(self, selected: np.ndarray) -> np.ndarray:
        """(slot, gene) -> position of the target in `selected`, -1 for targets not selected."""
        lookup = np.full((2, self.n_genes), -1, dtype=np.int64)
        lookup[self.slot[selected], self.gene[selected]] = np.arange(selected.size)
        return lookup


def _bits_of_chunk(chunk) -> tuple[np.ndarray, np.ndarray]:
    """Gene column and float64 bit pattern (as int64, order-preserving for positives) of each value."""
    genes, values = normalized_entries(chunk)
    return genes, values.view(np.int64)


def _gene_ranges(h5ad_path: str | Path, chunk_size: int, n_genes: int) -> tuple[np.ndarray, ...]:
    """Pass 1: per gene, the number of non-zero cells and the smallest and largest bit pattern."""
    n_nonzero = np.zeros(n_genes, dtype=np.int64)
    low = np.full(n_genes, np.iinfo(np.int64).max)
    high = np.full(n_genes, -1, dtype=np.int64)
    for chunk in iter_count_chunks(h5ad_path, chunk_size, progress="gene medians: ranges"):
        genes, bits = _bits_of_chunk(chunk)
        n_nonzero += np.bincount(genes, minlength=n_genes)
        np.minimum.at(low, genes, bits)
        np.maximum.at(high, genes, bits)
    return n_nonzero, low, high


def _entries_in_intervals(
    chunk, lookup: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(selected target, bit pattern) for every value lying in a selected target's interval."""
    genes, bits = _bits_of_chunk(chunk)
    found_targets, found_bits = [], []
    for slot_lookup in lookup:  # two slots: the lower and the upper middle value
        targets = slot_lookup[genes]
        inside = np.flatnonzero(targets >= 0)
        targets, candidate_bits = targets[inside], bits[inside]
        within = (candidate_bits >= low[targets]) & (candidate_bits <= high[targets])
        found_targets.append(targets[within])
        found_bits.append(candidate_bits[within])
    return np.concatenate(found_targets), np.concatenate(found_bits)


def _narrow(h5ad_path: str | Path, chunk_size: int, targets: _Targets, selected: np.ndarray, pass_number: int) -> None:
    """One histogram pass: shrink each selected target's interval to the bin holding its rank."""
    n_bins = int(np.clip(SELECTION_BUDGET // selected.size, MIN_BINS, MAX_BINS))
    low, high = targets.low[selected], targets.high[selected]
    width = (high - low) // n_bins + 1  # so that (high - low) // width < n_bins
    lookup = targets.gene_lookup(selected)
    histogram = np.zeros(selected.size * n_bins, dtype=np.int64)
    progress = f"gene medians: histogram pass {pass_number}"
    for chunk in iter_count_chunks(h5ad_path, chunk_size, progress=progress):
        found, bits = _entries_in_intervals(chunk, lookup, low, high)
        histogram += np.bincount(found * n_bins + (bits - low[found]) // width[found], minlength=histogram.size)
    cumulative = np.cumsum(histogram.reshape(selected.size, n_bins), axis=1)
    rank = targets.rank[selected]
    chosen = (cumulative <= rank[:, None]).sum(axis=1)
    rows = np.arange(selected.size)
    below = np.where(chosen > 0, cumulative[rows, np.maximum(chosen - 1, 0)], 0)
    new_low = low + chosen * width
    targets.rank[selected] = rank - below
    targets.count[selected] = cumulative[rows, chosen] - below
    targets.high[selected] = np.minimum(new_low + width - 1, high)
    targets.low[selected] = new_low


def _collect(h5ad_path: str | Path, chunk_size: int, targets: _Targets, selected: np.ndarray) -> np.ndarray:
    """Collect pass: gather the values left in each selected interval and pick the wanted rank."""
    lookup = targets.gene_lookup(selected)
    low, high = targets.low[selected], targets.high[selected]
    found_targets, found_bits = [], []
    for chunk in iter_count_chunks(h5ad_path, chunk_size, progress="gene medians: collect"):
        found, bits = _entries_in_intervals(chunk, lookup, low, high)
        found_targets.append(found)
        found_bits.append(bits)
    found, bits = np.concatenate(found_targets), np.concatenate(found_bits)
    order = np.lexsort((bits, found))
    first = np.concatenate([[0], np.cumsum(np.bincount(found, minlength=selected.size))[:-1]])
    return bits[order][first + targets.rank[selected]]


def nonzero_medians(h5ad_path: str | Path, chunk_size: int, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact non-zero median of count / n_counts * 10,000 per gene (NaN if never detected), and n detected."""
    n_nonzero, low, high = _gene_ranges(h5ad_path, chunk_size, n_genes)
    targets = _Targets(n_nonzero, low, high)
    per_target_cap = max(min(SELECTION_BUDGET // max(targets.gene.size, 1), COLLECT_CAP), 1)
    pass_number = 1
    while (selected := np.flatnonzero((targets.count > per_target_cap) & (targets.low < targets.high))).size:
        _narrow(h5ad_path, chunk_size, targets, selected, pass_number)
        pass_number += 1
    found_bits = targets.low.copy()  # an interval of a single bit pattern already is the answer
    unresolved = np.flatnonzero(targets.low < targets.high)
    if unresolved.size:
        found_bits[unresolved] = _collect(h5ad_path, chunk_size, targets, unresolved)
    found_values = found_bits.view(np.float64)
    medians = np.full(n_genes, np.nan)
    lower = targets.slot == 0
    medians[targets.gene[lower]] = found_values[lower]
    upper_genes = targets.gene[~lower]
    medians[upper_genes] = (medians[upper_genes] + found_values[~lower]) / 2
    return medians, n_nonzero


def compute_gene_medians(h5ad_path: str | Path, output_tsv: str | Path, tokenizer: TokenizerSettings) -> None:
    """Write ensembl_id, median, n_cells_detected for every gene detected in the file (streamed in
    chunks of tokenizer.chunk_size cells)."""
    gene_ids = read_gene_ids(h5ad_path)
    duplicated = pd.Index(gene_ids)[pd.Index(gene_ids).duplicated()].unique()
    if duplicated.size:
        raise InputError(
            str(h5ad_path),
            f"{duplicated.size} gene ids occur more than once (e.g. {', '.join(duplicated[:3])}), "
            "so a median per gene is ambiguous",
            "sum or drop duplicated genes so that each Ensembl ID has one column",
        )
    medians, n_detected = nonzero_medians(h5ad_path, tokenizer.chunk_size, gene_ids.size)
    detected = n_detected > 0
    log.info(
        "%d of %d genes of %s are never detected and have no median; they are left out of %s",
        int((~detected).sum()), gene_ids.size, h5ad_path, output_tsv,
    )
    table = pd.DataFrame(
        {"ensembl_id": gene_ids[detected], "median": medians[detected], "n_cells_detected": n_detected[detected]}
    )
    write_tsv(table, output_tsv)


def _corpus_medians(computed_medians_tsv: str | Path | None, setting: str) -> dict[str, float]:
    if computed_medians_tsv is None:
        raise InputError(
            setting, "'corpus' needs the gene medians computed from the corpus", "pass computed_medians_tsv"
        )
    return load_median_dictionary(str(computed_medians_tsv))


def _load_reference_medians(medians_source: str, computed_medians_tsv: str | Path | None) -> dict[str, float]:
    if medians_source == CORPUS:
        return _corpus_medians(computed_medians_tsv, "reference.medians")
    if medians_source in BUILTIN_REFERENCES:
        return load_median_dictionary(BUILTIN_REFERENCES[medians_source][1])
    return load_median_dictionary(medians_source)


def _load_reference_tokens(
    token_dictionary_source: str, computed_medians_tsv: str | Path | None, special_tokens: bool
) -> dict[str, int]:
    """'corpus': special tokens first, then every gene with a corpus median in ascending ID order."""
    if token_dictionary_source == CORPUS:
        genes = sorted(_corpus_medians(computed_medians_tsv, "reference.token_dictionary"))
        specials = [PAD_TOKEN, MASK_TOKEN] + ([CLS_TOKEN, EOS_TOKEN] if special_tokens else [])
        return {token: token_id for token_id, token in enumerate(specials + genes)}
    if token_dictionary_source in BUILTIN_REFERENCES:
        return load_token_dictionary(BUILTIN_REFERENCES[token_dictionary_source][0])
    return load_token_dictionary(token_dictionary_source)


def build_reference(
    settings: ReferenceSettings,
    tokenizer: TokenizerSettings,
    computed_medians_tsv: str | Path | None,
    output_token_dictionary: str | Path,
    output_medians: str | Path,
) -> None:
    """Write the token dictionary (ids unchanged) and the medians of the genes it shares with it.

    The token dictionary is written whole, so a published checkpoint's embedding rows keep lining
    up with their genes; medians_used.tsv holds only genes that have both a token and a median,
    which are the genes the tokenizer can encode. `computed_medians_tsv`: the corpus medians, which
    a 'corpus' source needs.
    """
    tokens = _load_reference_tokens(settings.token_dictionary, computed_medians_tsv, tokenizer.special_tokens)
    medians = _load_reference_medians(settings.medians, computed_medians_tsv)
    sources = f"reference.token_dictionary={settings.token_dictionary}, reference.medians={settings.medians}"
    if tokenizer.special_tokens and not {CLS_TOKEN, EOS_TOKEN} <= tokens.keys():
        raise InputError(
            sources,
            "tokenizer.special_tokens (Geneformer V2 mode) needs <cls> and <eos>, which the token dictionary lacks",
            "use a V2 token dictionary, or set tokenizer.special_tokens: false for a V1 dictionary",
        )
    token_table = pd.DataFrame({"token": list(tokens), "token_id": list(tokens.values())}).sort_values("token_id")
    gene_tokens = token_table[~token_table["token"].isin(SPECIAL_TOKENS)]
    median_series = pd.Series(medians, dtype=np.float64)
    shared = gene_tokens[gene_tokens["token"].isin(median_series.index)]
    smaller = min(len(gene_tokens), median_series.size)
    if len(shared) == 0 or len(shared) < MIN_SHARED_FRACTION * smaller:
        raise InputError(
            sources,
            f"the token and median dictionaries share only {len(shared)} genes "
            f"({len(gene_tokens)} genes have tokens, {median_series.size} have medians)",
            "use a token dictionary and medians of the same Geneformer release (V1 with V1, V2 with V2), "
            "or medians computed for this vocabulary",
        )
    log.info(
        "reference: %d tokens, %d medians, %d genes with both (%s)",
        len(tokens), median_series.size, len(shared), sources,
    )
    write_tsv(token_table, output_token_dictionary)
    used = pd.DataFrame({"ensembl_id": shared["token"].to_numpy(), "median": median_series[shared["token"]].to_numpy()})
    write_tsv(used, output_medians)
