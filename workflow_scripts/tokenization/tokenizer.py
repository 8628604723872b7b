"""Geneformer's rank-value encoding of cells into token sequences, as a Hugging Face dataset.

Per cell, as in Geneformer's tokenizer: keep genes that have a token and a median; value =
count / n_counts * 10,000 / gene median (n_counts read from obs, not recomputed); drop zeros;
order genes by value, highest first; emit their token ids. V1 (no special tokens) keeps the first
`model_input_size` genes; V2 keeps `model_input_size - 2` and wraps them in <cls> ... <eos>.

Ties: genes with equal values are ordered by ascending token id, so the output is deterministic.
Geneformer's reference sorts with numpy's default (non-stable) argsort, so its order among tied
genes is arbitrary; ties are common (a cell's single-count genes share a value whenever their
medians are equal), so tokenized sequences match the reference up to the order within ties.

Each chunk of cells is encoded by sorting one key per non-zero entry and truncating each cell by
position within the cell, with no loop over cells or genes (see `ranked_tokens`; the keys are sorted
run by run of whole cells, a few dozen runs per chunk, so that each run fits in cache); with `threads`
above one, worker threads encode chunks while the file is read and written in order. Rows are streamed
to an Arrow file on disk, so memory follows the chunk size and the number of threads
(plus the cell ids and requested obs columns, held as strings for all cells).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset

from ..core.counts import (
    TARGET_SUM,
    CountChunk,
    entry_rows,
    iter_count_chunks,
    normalized_counts,
    read_gene_ids,
    read_obs,
)
from ..core.dictionaries import (
    CLS_TOKEN,
    EOS_TOKEN,
    gene_vocabulary,
    load_median_dictionary,
    load_token_dictionary,
)
from ..core.errors import InputError
from ..core.outputs import atomic_path
from ..core.sections import ChecksSettings, TokenizerSettings

log = logging.getLogger(__name__)

RESERVED_COLUMNS = ("input_ids", "length", "cell_id")
# keys are sorted in runs of whole cells of about this many entries (64 KiB), which stay in a core's cache
SORT_RUN_ENTRIES = 8192
Item = TypeVar("Item")
Result = TypeVar("Result")


def ranked_tokens(
    genes_per_cell: np.ndarray, genes: np.ndarray, counts: np.ndarray, n_counts: np.ndarray, gene_token: np.ndarray,
    gene_median: np.ndarray,
) -> np.ndarray:
    """Token ids of a chunk's entries ordered by cell, then value descending, then token id: exact, one key each.

    Entries come in canonical CSR order (`genes_per_cell` entries of each cell in turn), each gene
    with its own non-negative token (so a cell never holds a token twice); value = count / n_counts of
    the cell * 10,000 / gene median. The bit pattern of a positive float64 orders like its value, so one
    unsigned 64-bit key holds the cell in its high bits, the (inverted) value's leading bits in the
    middle and the token id in the low bits; sorting these keys in place (no argsort; run by run of
    whole cells, see `_sort_by_runs_of_cells`) orders ties by token id, and the sorted keys are the
    tokens. Neighbours whose keys agree in cell and value bits (mostly exact ties) are checked against
    their exact values: the key's value bits, with the cell's n_counts and the token's median, give
    back the integer count, hence the exact value. Tied values are already in order; values that
    differ only below the kept bits are put back in exact order, within their group only. Recovering
    the count needs counts below 2 ** (kept mantissa bits - 2), about 67 million with the default
    512-cell chunk and a 25,000-token vocabulary; a chunk with a larger count is ordered by a plain lexsort
    instead.
    """
    values = normalized_counts(counts, np.repeat(n_counts, genes_per_cell))
    values /= gene_median[genes]
    token_bits = max(int(gene_token.max()).bit_length(), 1)
    value_bits = 64 - token_bits - max(int(n_counts.size - 1).bit_length(), 1)
    mantissa_bits = value_bits - 12  # below the sign and the 11 exponent bits
    if counts.size and counts.max() >= 2.0 ** (mantissa_bits - 2):
        tokens = gene_token[genes]
        return tokens[np.lexsort((tokens, -values, entry_rows(genes_per_cell)))].astype(np.int32)
    token_mask = np.uint64((1 << token_bits) - 1)
    key = np.iinfo(np.int64).max - values.view(np.int64)  # non-negative, ascending as values descend
    key >>= 63 - value_bits - token_bits
    key = key.view(np.uint64)
    key &= ~token_mask
    key |= np.repeat(np.arange(n_counts.size, dtype=np.uint64) << np.uint64(value_bits + token_bits), genes_per_cell)
    key |= gene_token.astype(np.uint64)[genes]
    _sort_by_runs_of_cells(key, genes_per_cell)
    ranked = (key & token_mask).astype(np.int32)
    key >>= np.uint64(token_bits)
    collides = np.flatnonzero(key[1:] == key[:-1])
    if collides.size:
        median_of_token = np.zeros(int(gene_token.max()) + 1)
        median_of_token[gene_token[gene_token >= 0]] = gene_median[gene_token >= 0]
        _restore_exact_order(ranked, key, collides, value_bits, n_counts, median_of_token)
    return ranked


def _sort_by_runs_of_cells(key: np.ndarray, genes_per_cell: np.ndarray) -> None:
    """Sort keys led by their cell, in place, run of whole cells by run: the same result as one sort of
    the array, since no key moves past its cell, but faster (runs of `SORT_RUN_ENTRIES` sort in
    cache; a chunk's megabytes of keys do not; benchmarks/README.md)."""
    cell_ends = np.cumsum(genes_per_cell)
    run_ends = np.unique(cell_ends[np.searchsorted(cell_ends, np.arange(SORT_RUN_ENTRIES, key.size, SORT_RUN_ENTRIES))])
    start = 0
    for end in [*run_ends.tolist(), key.size]:
        key[start:end].sort()
        start = end


def _restore_exact_order(
    ranked: np.ndarray, cell_value_key: np.ndarray, collides: np.ndarray, value_bits: int, n_counts: np.ndarray,
    median_of_token: np.ndarray,
) -> None:
    """Reorder, in place, the groups of sorted entries whose keys agree but whose exact values are not descending."""
    pairs = np.stack([collides, collides + 1], axis=1).ravel()  # ascending; repeats inside groups of 3+ entries
    positions = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
    keys = cell_value_key[positions]
    cells = (keys >> np.uint64(value_bits)).astype(np.int64)
    kept = (keys & np.uint64((1 << value_bits) - 1)).astype(np.int64) << (63 - value_bits)
    leading_value = (np.iinfo(np.int64).max - kept).view(np.float64)  # within 2 ** -mantissa_bits of the value
    median = median_of_token[ranked[positions]]
    cell_n_counts = n_counts[cells]
    count = np.rint(leading_value * median * cell_n_counts / TARGET_SUM)
    exact = normalized_counts(count, cell_n_counts) / median
    group = np.cumsum(np.r_[True, keys[1:] != keys[:-1]])
    out_of_order = np.unique(group[1:][(group[1:] == group[:-1]) & (exact[1:] > exact[:-1])])
    if out_of_order.size:
        fix = np.isin(group, out_of_order)
        order = np.lexsort((ranked[positions[fix]], -exact[fix], group[fix]))
        ranked[positions[fix]] = ranked[positions[fix]][order]


def rank_value_encode(
    chunk: CountChunk, gene_token: np.ndarray, gene_median: np.ndarray, n_gene_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the chunk's cells, concatenated, and each cell's number of gene tokens."""
    matrix = chunk.matrix
    # int64 gene indices: numpy gathers with int32 index arrays slower here (benchmarks/README.md)
    genes, counts, genes_per_cell = matrix.indices.astype(np.int64), matrix.data, np.diff(matrix.indptr)
    if (gene_token < 0).any():
        in_vocabulary = gene_token[genes] >= 0
        outside = np.bincount(entry_rows(genes_per_cell)[~in_vocabulary], minlength=genes_per_cell.size)
        genes_per_cell = genes_per_cell - outside
        genes, counts = genes[in_vocabulary], counts[in_vocabulary]
    ranked = ranked_tokens(genes_per_cell, genes, counts, chunk.n_counts, gene_token, gene_median)
    if genes_per_cell.max(initial=0) > n_gene_tokens:
        # the cell leads the sort key, so the ranked entries keep the cells' CSR order and sizes
        first_of_cell = np.cumsum(genes_per_cell) - genes_per_cell
        position_in_cell = np.arange(ranked.size) - np.repeat(first_of_cell, genes_per_cell)
        ranked = ranked[position_in_cell < n_gene_tokens]
    return ranked, np.minimum(genes_per_cell, n_gene_tokens)


def _input_ids(gene_tokens: np.ndarray, lengths: np.ndarray, special: tuple[int, int] | None) -> pa.ListArray:
    """Arrow list column of each cell's tokens (`lengths` in all), <cls> first and <eos> last in V2 mode."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    if special is None:
        flat = gene_tokens
    else:
        flat = np.empty(offsets[-1], dtype=np.int32)
        is_gene = np.ones(flat.size, dtype=bool)
        is_gene[offsets[:-1]] = False
        is_gene[offsets[1:] - 1] = False
        flat[offsets[:-1]] = special[0]
        flat[offsets[1:] - 1] = special[1]
        flat[is_gene] = gene_tokens
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int32()))


def _special_token_ids(tokens: dict[str, int], special_tokens: bool, source: str) -> tuple[int, int] | None:
    if not special_tokens:
        return None
    if not {CLS_TOKEN, EOS_TOKEN} <= tokens.keys():
        raise InputError(
            source,
            "tokenizer.special_tokens (V2 mode) needs <cls> and <eos>, which the token dictionary lacks",
            "use a V2 token dictionary, or set tokenizer.special_tokens: false",
        )
    return tokens[CLS_TOKEN], tokens[EOS_TOKEN]


def _cell_columns(obs: pd.DataFrame, obs_columns: list[str], source: str) -> dict[str, pa.Array]:
    """cell_id (obs index) and the requested obs columns, as strings."""
    for column in obs_columns:
        if column in RESERVED_COLUMNS:
            raise InputError(source, f"obs column '{column}' clashes with an output column", "rename it in obs")
        if column not in obs.columns:
            raise InputError(
                source,
                f"obs has no column '{column}' (columns: {', '.join(map(str, obs.columns))})",
                "add the column to obs or fix the column name in the config",
            )
    if not obs.index.is_unique:
        raise InputError(source, "obs index (cell ids) is not unique", "make it unique: adata.obs_names_make_unique()")
    columns = {"cell_id": obs.index.astype(str).to_numpy()}
    columns.update({column: obs[column].astype(str).to_numpy() for column in dict.fromkeys(obs_columns)})
    return {name: pa.array(values, type=pa.string()) for name, values in columns.items()}


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], threads: int) -> Iterator[Result]:
    """`map(function, items)` on `threads` worker threads, in order, with at most `threads` + 1 items taken
    ahead of the caller (so a stream of chunks stays a stream); numpy releases the GIL while it sorts and
    computes on arrays, so workers encode while the caller reads and writes. One thread: a plain map."""
    if threads == 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[Result]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def tokenize_dataset(
    h5ad_path: str | Path,
    token_dictionary_tsv: str | Path,
    medians_tsv: str | Path,
    output_dir: str | Path,
    settings: TokenizerSettings,
    checks: ChecksSettings,
    obs_columns: list[str],
    threads: int = 1,
) -> None:
    """Rank-value encode every cell of the file into a `datasets` directory (written atomically); chunks of
    settings.chunk_size cells are read and written in file order by the calling thread and encoded by
    `threads` worker threads."""
    source = str(h5ad_path)
    tokens = load_token_dictionary(str(token_dictionary_tsv))
    special = _special_token_ids(tokens, settings.special_tokens, str(token_dictionary_tsv))
    n_gene_tokens = settings.model_input_size if special is None else settings.model_input_size - 2
    gene_token, gene_median = gene_vocabulary(
        read_gene_ids(h5ad_path), tokens, load_median_dictionary(str(medians_tsv)), source,
        checks.min_genes_in_vocabulary,
    )
    cell_columns = _cell_columns(read_obs(h5ad_path), obs_columns, source)
    schema = pa.schema(
        [("input_ids", pa.list_(pa.int32())), ("length", pa.int32())] + [(name, pa.string()) for name in cell_columns]
    )

    def encoded_batch(chunk: CountChunk) -> tuple[pa.RecordBatch, np.ndarray]:
        gene_tokens, n_genes = rank_value_encode(chunk, gene_token, gene_median, n_gene_tokens)
        lengths = n_genes if special is None else n_genes + 2
        columns = [_input_ids(gene_tokens, lengths, special), pa.array(lengths, type=pa.int32())]
        columns += [values[chunk.start:chunk.start + n_genes.size] for values in cell_columns.values()]
        return pa.record_batch(columns, schema=schema), n_genes

    n_cells = n_empty = n_truncated = 0
    with atomic_path(output_dir) as temporary:
        cells_file = temporary.parent / "cells.arrow"
        with pa.OSFile(str(cells_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            chunks = iter_count_chunks(h5ad_path, settings.chunk_size, progress="tokenize")
            for batch, n_genes in ordered_map(encoded_batch, chunks, threads):
                writer.write_batch(batch)
                n_cells += n_genes.size
                n_empty += int((n_genes == 0).sum())
                n_truncated += int((n_genes == n_gene_tokens).sum())
        if n_empty:
            raise InputError(
                source,
                f"{n_empty} of {n_cells} cells have no gene in the vocabulary with a non-zero count (zero tokens)",
                "filter cells with no vocabulary genes before tokenizing",
            )
        Dataset.from_file(str(cells_file)).save_to_disk(str(temporary))
    log.info(
        "tokenized %d cells of %s: %d of %d genes in the vocabulary, %d cells filled all %d gene positions",
        n_cells, source, int((gene_token >= 0).sum()), gene_token.size, n_truncated, n_gene_tokens,
    )
