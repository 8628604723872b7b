"""Readers that turn each real source format into the workflow's canonical raw-count AnnData.

Canonical means: X is CSR int32 raw counts, the var index (and var['ensembl_id']) holds unversioned
human Ensembl gene IDs, each at most once, the obs index holds unique cell ids, obs['n_counts'] holds
the row sums, and the label columns a task needs sit beside them. Every later stage (medians,
tokenizer, preflight) reads only this form, so each source's quirks are handled here once:
counts kept in layers['counts'] or .raw, gene symbols instead of Ensembl IDs, GEO's sparse triplet
text, hashing-based treatment labels, and gene lists shipped as pickles.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from ..core.counts import count_problem, open_backed, read_h5ad
from ..core.dictionaries import (
    ENSEMBL_PATTERN,
    load_gene_name_dictionary,
    map_gene_symbols,
    safe_load_pickle,
)
from ..core.errors import InputError
from ..core.labels import DOSAGE_INSENSITIVE, DOSAGE_SENSITIVE, dose_label
from ..core.outputs import atomic_path, write_tsv
from .settings import DatasetSettings

log = logging.getLogger(__name__)

INTEGER_TOLERANCE = 1e-6  # stored counts may carry float rounding noise
LOG_NORMALIZED_MAX = 20.0  # log1p of any plausible scaled count is far below this
# Stored log1p values carry either a decimal rounding (e.g. 3 places, as scanpy's pbmc68k_reduced)
# or their float type's precision; an inverted value counts as an integer when it lies within
# INVERSION_SAFETY times the error that this resolution allows, and never looser than needed for
# float64 arithmetic. Normalized values that are not log1p (proportions, a target sum of 10), read as
# log1p, land orders of magnitude further off.
MAX_DECIMAL_PLACES = 6
INVERSION_SAFETY = 4.0
INVERSION_RELATIVE_FLOOR = 1e-9
INVERSION_MIN_FRACTION = 0.95  # share of inverted values that must be integer-like
INT32_MAX = np.iinfo(np.int32).max
RAW_COUNTS_FIX = (
    "provide the raw integer counts, in X, layers['counts'] or .raw (e.g. the unnormalized matrix "
    "of the original source); normalized, scaled or batch-corrected values cannot be tokenized"
)
TRIPLET_CHUNK_ROWS = 5_000_000

# Geneformer's gene classification example (dosage_sensitivity_TFs.pickle): list name -> label.
DOSAGE_CLASSES = {"Dosage-sensitive TFs": DOSAGE_SENSITIVE, "Dosage-insensitive TFs": DOSAGE_INSENSITIVE}

# sci-Plex2 (GSM4150377) hash assignment, as in the authors' small-screen notebook: a cell is kept
# when its top hash oligo has > 30 UMIs, is > 10x the second best and has q < 0.01.
SCIPLEX2_MIN_HASH_UMIS = 30
SCIPLEX2_MIN_TOP_TO_SECOND_RATIO = 10.0
SCIPLEX2_MAX_QVAL = 0.01
SCIPLEX2_PDATA_COLUMNS = ("top_oligo", "hash_umis", "top_to_second_best_ratio", "qval")

CHAFFIN_CARDIOMYOCYTES = ("Cardiomyocyte_I", "Cardiomyocyte_II", "Cardiomyocyte_III")
CARDIOMYOPATHY_DISEASES = ("NF", "HCM", "DCM")


# ---------------------------------------------------------------------------------------------
# Counts: where they are, whether they are raw, and recovering them from log-normalized values
# ---------------------------------------------------------------------------------------------

def _count_problem(matrix: sp.csr_matrix) -> str | None:
    """Why the stored values are not raw counts that fit int32 (None when they are)."""
    problem = count_problem(matrix.data, INTEGER_TOLERANCE)
    if problem is None and matrix.data.size and matrix.data.max() > INT32_MAX:
        return f"values above the int32 range (max {matrix.data.max():g})"
    return problem


def _as_int32_counts(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Nearest-integer int32 copy without explicit zeros or duplicate entries."""
    values = matrix.data if np.issubdtype(matrix.data.dtype, np.integer) else np.rint(matrix.data)
    counts = sp.csr_matrix((values.astype(np.int32), matrix.indices.copy(), matrix.indptr.copy()), shape=matrix.shape)
    counts.sum_duplicates()
    counts.eliminate_zeros()
    return counts


def _raw_aligned(adata: anndata.AnnData) -> tuple[sp.csr_matrix | None, str | None]:
    """.raw.X with its columns in adata.var's order (matched by name when the two var differ)."""
    raw = adata.raw
    matrix = sp.csr_matrix(raw.X)
    if raw.var_names.equals(adata.var_names):
        return matrix, None
    if not raw.var_names.is_unique:
        return None, "its gene names repeat, so its columns cannot be matched to var"
    columns = raw.var_names.get_indexer(adata.var_names)
    missing = int((columns < 0).sum())
    if missing:
        return None, f"it lacks {missing} of var's {adata.n_vars} genes"
    if raw.n_vars > adata.n_vars:
        log.warning(
            ".raw holds %d genes that var lacks; only var's %d genes are kept (to keep them all, "
            "write adata.raw.to_adata() with the obs columns and read that file instead)",
            raw.n_vars - adata.n_vars, adata.n_vars,
        )
    return matrix[:, columns], None


def _candidates(adata: anndata.AnnData) -> Iterator[tuple[str, sp.csr_matrix | None, str | None]]:
    """The matrices that may hold counts, in the order they are tried: (where, matrix, why unusable).

    Lazy, so a matrix is converted only when the ones before it were rejected.
    """
    if "counts" in adata.layers:
        yield "layers['counts']", sp.csr_matrix(adata.layers["counts"]), None
    if adata.raw is not None:
        yield ("raw.X", *_raw_aligned(adata))
    if adata.X is not None:
        yield "X", sp.csr_matrix(adata.X), None


def find_raw_counts(adata: anndata.AnnData, source: str) -> tuple[sp.csr_matrix, str]:
    """The raw integer counts (CSR int32, columns as adata.var) and where they were found.

    Tried in order: layers['counts'], .raw.X, X; the first whose stored values are all finite,
    non-negative and integer (within 1e-6) wins, because normalized matrices usually sit in X.
    """
    problems = []
    for where, matrix, unusable in _candidates(adata):
        problem = unusable or _count_problem(matrix)
        if problem is None:
            log.info("%s: raw counts found in %s", source, where)
            return _as_int32_counts(matrix), where
        problems.append(f"{where}: {problem}")
    found = "; ".join(problems) if problems else "the file has no layers['counts'], .raw or X"
    raise InputError(source, f"no raw integer counts found ({found})", RAW_COUNTS_FIX)


def looks_log_normalized(matrix) -> bool:
    """True for values like log1p(count / n_counts * target): finite, non-negative, below 20, not all integers."""
    data = sp.csr_matrix(matrix).data
    if data.size == 0 or not np.issubdtype(data.dtype, np.floating):
        return False
    if not np.isfinite(data).all() or (data < 0).any() or data.max() > LOG_NORMALIZED_MAX:
        return False
    return bool((np.abs(data - np.rint(data)) > INTEGER_TOLERANCE).any())


def stored_resolution(values: np.ndarray, stored_dtype: np.dtype):
    """Half the step between representable stored values, as a function of the value: a fixed
    10^-k / 2 when every value is rounded to k decimals, else the float type's relative precision."""
    float_eps = float(np.finfo(stored_dtype if np.issubdtype(stored_dtype, np.floating) else np.float64).eps)
    for places in range(1, MAX_DECIMAL_PLACES + 1):
        shifted = values * 10.0**places
        if np.all(np.abs(shifted - np.rint(shifted)) <= 4 * float_eps * np.maximum(shifted, 1.0)):
            return lambda value, step=0.5 * 10.0**-places: np.full_like(value, step)
    return lambda value: float_eps * np.abs(value)


def expm1_relative_error(value: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Relative error of expm1(value) caused by an absolute error in value: d log(expm1(x)) / dx = exp(x) / expm1(x)."""
    return error * np.exp(value) / np.expm1(value)


def counts_from_log_normalized(matrix, source: str) -> sp.csr_matrix:
    """Recover raw counts (CSR int32) from log1p-normalized values, or refuse.

    Valid when every stored value is log1p(count * s_cell) for integer counts and one positive
    factor s_cell per cell: scanpy's normalize_total (any target_sum, including 1e4 and CPM)
    followed by log1p (natural log), or a per-cell size factor with pseudocount 1. Then
    expm1(value) = count * s_cell, and a cell's smallest non-zero expm1 value is s_cell itself when
    the cell has at least one gene with a single count, which nearly every sparse single-cell
    profile has. Dividing by it and rounding returns the counts exactly (the counts of genes that
    are not stored, e.g. outside a highly-variable subset, are not recovered, so n_counts then
    covers the stored genes only).

    Not valid, and refused because the quotients are not integers to the precision of the stored
    values (fewer than 95 % within the error their decimal rounding or float type allows): normalized values without the log1p (e.g.
    proportions), log2 or log10 data, pseudocounts other than 1, scaled/centered or batch-corrected
    values, length-normalized (TPM/FPKM) data, or cells without a singleton count.
    Cells of the last kind that slip through a passing matrix are counted in a warning: their
    counts come out divided by their smallest count and rounded (their gene ranks, which Geneformer
    uses, change only by ties).
    """
    if not looks_log_normalized(matrix):
        raise InputError(
            source,
            "values are not log1p-normalized expression (needs non-negative, non-integer values below "
            f"{LOG_NORMALIZED_MAX:g})",
            RAW_COUNTS_FIX,
        )
    stored_dtype = sp.csr_matrix(matrix).dtype
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    matrix.eliminate_zeros()
    half_step = stored_resolution(matrix.data, stored_dtype)
    scaled = np.expm1(matrix.data)
    nnz = np.diff(matrix.indptr)
    filled = nnz > 0
    starts = matrix.indptr[:-1][filled]
    smallest_value = np.minimum.reduceat(matrix.data, starts)
    smallest = np.ones(matrix.shape[0])
    smallest[filled] = np.expm1(smallest_value)
    smallest_error = np.zeros(matrix.shape[0])
    smallest_error[filled] = expm1_relative_error(smallest_value, half_step(smallest_value))
    quotient = scaled / np.repeat(smallest, nnz)
    counts = np.rint(quotient)
    relative_error = expm1_relative_error(matrix.data, half_step(matrix.data)) + np.repeat(smallest_error, nnz)
    tolerance = np.maximum(INVERSION_SAFETY * relative_error, INVERSION_RELATIVE_FLOOR)
    near = np.abs(quotient - counts) <= tolerance * np.maximum(counts, 1.0)
    fraction = float(near.mean())
    if fraction < INVERSION_MIN_FRACTION:
        raise InputError(
            source,
            f"the values look log-normalized, but expm1(value) divided by each cell's smallest non-zero "
            f"value is an integer (to the precision its stored values allow) for only {fraction:.1%} of "
            f"entries (needs {INVERSION_MIN_FRACTION:.0%}), so they are not log1p(count x per-cell factor) "
            "of integer counts (normalized values without the log1p, e.g. proportions, look like this) and "
            "the counts cannot be recovered",
            RAW_COUNTS_FIX,
        )
    cell_fraction = np.add.reduceat(near.astype(np.int64), starts) / nnz[filled]
    irregular = int((cell_fraction < INVERSION_MIN_FRACTION).sum())
    if irregular:
        log.warning(
            "%s: %d of %d cells have no singleton count, so their recovered counts are scaled down "
            "and rounded", source, irregular, int(filled.sum()),
        )
    totals = np.add.reduceat(scaled, starts)
    log.info(
        "%s: counts recovered from log1p-normalized values (%.2f%% of entries integer-like; median "
        "expm1 row sum %.4g, the normalization target when all genes are stored)",
        source, 100 * fraction, float(np.median(totals)) if totals.size else 0.0,
    )
    inverted = sp.csr_matrix((counts.astype(np.int32), matrix.indices, matrix.indptr), shape=matrix.shape)
    inverted.eliminate_zeros()
    return inverted


def _counts_or_inverted(adata: anndata.AnnData, source: str) -> sp.csr_matrix:
    """Raw counts where stored; else counts recovered from a log1p-normalized matrix (with a warning)."""
    try:
        return find_raw_counts(adata, source)[0]
    except InputError as no_raw:
        for where, matrix, unusable in _candidates(adata):
            if unusable is None and looks_log_normalized(matrix):
                counts = counts_from_log_normalized(matrix, f"{source} {where}")
                log.warning(
                    "%s: no raw counts stored (%s); counts were recovered by inverting the log1p "
                    "normalization of %s. Provide raw counts to avoid relying on this.",
                    source, no_raw.problem, where,
                )
                return counts
        raise InputError(
            source, f"{no_raw.problem}, and no matrix is log1p-normalized counts that could be inverted",
            RAW_COUNTS_FIX,
        ) from None


def _rounded_counts(matrix: sp.csr_matrix, groups: pd.Series, source: str) -> sp.csr_matrix:
    """Counts rounded to integers, with a warning of how many were not integers per group.

    For curated files whose 'counts' mix UMI counts with read-based or length-normalized values
    of non-UMI technologies (e.g. scIB's pancreas): refusing them would refuse the dataset.
    """
    data = matrix.data
    problem = count_problem(data, integer_tolerance=np.inf)  # non-integers are rounded below
    if problem is not None:
        raise InputError(source, f"layers['counts'] holds {problem}", RAW_COUNTS_FIX)
    off = np.abs(data - np.rint(data)) > INTEGER_TOLERANCE
    if off.any():
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        codes, names = pd.factorize(groups.astype(str))
        stored = np.bincount(codes[rows], minlength=len(names))
        non_integer = np.bincount(codes[rows[off]], minlength=len(names))
        by_group = ", ".join(
            f"{name} {count / max(total, 1):.0%}" for name, count, total in zip(names, non_integer, stored) if count
        )
        log.warning(
            "%s: %.1f%% of the stored counts are not integers (share by %s: %s), typically read-based or "
            "length-normalized values of non-UMI technologies; they are rounded to the nearest integer "
            "(%d non-zero values below 0.5 become 0)",
            source, 100 * off.mean(), groups.name, by_group, int((np.rint(data[off]) == 0).sum()),
        )
    if data.size and data.max() > INT32_MAX:
        raise InputError(source, "counts exceed the int32 range", RAW_COUNTS_FIX)
    return _as_int32_counts(matrix)


# ---------------------------------------------------------------------------------------------
# Genes: symbols and versioned IDs to unversioned Ensembl IDs; the canonical AnnData
# ---------------------------------------------------------------------------------------------


def _gene_names(var: pd.DataFrame) -> np.ndarray:
    """The gene identifiers of a var table: var['ensembl_id'], else var['gene_ids'], else the index."""
    for column in ("ensembl_id", "gene_ids"):
        if column in var.columns:
            return var[column].astype(str).to_numpy()
    return var.index.astype(str).to_numpy()


def _sum_duplicate_columns(counts: sp.csr_matrix, ids: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Columns with the same id summed (one sparse product), ids in order of first appearance."""
    codes, unique_ids = pd.factorize(ids)
    merge = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.int64), (np.arange(len(codes)), codes)), shape=(len(codes), len(unique_ids))
    )
    return (counts.astype(np.int64) @ merge).tocsr(), np.asarray(unique_ids, dtype=str)


def canonical_anndata(counts: sp.csr_matrix, gene_ids, obs: pd.DataFrame, source: str) -> anndata.AnnData:
    """The canonical AnnData: unmapped genes ('') dropped, duplicate Ensembl IDs summed, CSR int32
    counts, var index = var['ensembl_id'], obs['n_counts'] = row sums; cells left without counts dropped."""
    counts = sp.csr_matrix(counts)
    gene_ids = np.asarray(gene_ids, dtype=str)
    if counts.shape != (len(obs), len(gene_ids)):
        raise ValueError(f"counts {counts.shape} do not match {len(obs)} cells x {len(gene_ids)} genes")
    if not obs.index.is_unique:
        duplicated = obs.index[obs.index.duplicated()].unique()
        raise InputError(source, f"{len(duplicated)} cell ids (obs index) repeat, e.g. {list(duplicated[:3])}",
                         "make the cell ids unique, e.g. adata.obs_names_make_unique()")
    problem = _count_problem(counts)
    if problem is not None:
        raise InputError(source, f"counts are not raw: {problem}", RAW_COUNTS_FIX)
    mapped = gene_ids != ""
    if not mapped.any():
        raise InputError(
            source, f"none of the {len(gene_ids)} genes maps to a human Ensembl ID",
            "name genes by Ensembl ID (var['ensembl_id'] or the var index) or by symbols in Geneformer's "
            "gene name dictionary",
        )
    merged, unique_ids = _sum_duplicate_columns(counts[:, mapped], gene_ids[mapped])
    if merged.data.size and merged.data.max() > INT32_MAX:
        raise InputError(source, "summed counts exceed the int32 range", RAW_COUNTS_FIX)
    n_counts = np.asarray(merged.sum(axis=1)).ravel()
    has_counts = n_counts > 0
    if not has_counts.all():
        log.warning("%s: %d cells have no counts in the mapped genes and are dropped",
                    source, int((~has_counts).sum()))
    if not has_counts.any():
        raise InputError(source, f"none of its {len(obs)} cells has counts in the {len(unique_ids)} mapped genes",
                         "pass a count matrix with cells, whose genes are Ensembl IDs or known symbols")
    matrix = _as_int32_counts(merged[has_counts])
    obs = obs.loc[has_counts].copy()
    obs.index = obs.index.astype(str)
    obs["n_counts"] = n_counts[has_counts].astype(np.int64)
    var = pd.DataFrame({"ensembl_id": unique_ids}, index=pd.Index(unique_ids, name="gene_id"))
    log.info(
        "%s: %d cells; %d genes -> %d Ensembl IDs (%d unmapped dropped, %d duplicate columns summed)",
        source, len(obs), len(gene_ids), len(unique_ids), int((~mapped).sum()), int(mapped.sum()) - len(unique_ids),
    )
    return anndata.AnnData(X=matrix, obs=obs, var=var)


def write_canonical_h5ad(adata: anndata.AnnData, output: str | Path) -> None:
    """Check the canonical contract, then write the h5ad atomically (nothing left on failure)."""
    if not (sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.int32):
        raise ValueError(f"X must be CSR int32 counts, not {type(adata.X).__name__} {adata.X.dtype}")
    if not np.array_equal(adata.var_names.to_numpy(dtype=str), adata.var["ensembl_id"].to_numpy(dtype=str)):
        raise ValueError("var index and var['ensembl_id'] differ")
    if not (adata.obs_names.is_unique and adata.var_names.is_unique):
        raise ValueError("cell ids and gene ids must be unique")
    if not np.array_equal(adata.obs["n_counts"].to_numpy(), np.asarray(adata.X.sum(axis=1)).ravel()):
        raise ValueError("obs['n_counts'] are not the row sums of X")
    with atomic_path(output) as temporary:
        adata.write_h5ad(temporary)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

def _require_obs_columns(obs: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [column for column in columns if column not in obs.columns]
    if missing:
        raise InputError(source, f"obs lacks the column(s) {missing} (it has {list(obs.columns)})",
                         "name existing obs columns in the config, or add them to the file")


def read_user_h5ad(path: str | Path, obs_columns: list[str], gene_name_to_ensembl: dict[str, str]) -> anndata.AnnData:
    """The user's own h5ad as canonical AnnData, keeping the obs columns the experiments use
    (label, donor).

    Counts come from find_raw_counts, or, when only log1p-normalized values are stored, from
    inverting them (with a warning); genes from var['ensembl_id'], var['gene_ids'] or the index.
    """
    source = str(path)
    adata = read_h5ad(path)
    _require_obs_columns(adata.obs, obs_columns, source)
    counts = _counts_or_inverted(adata, source)
    gene_ids, stats = map_gene_symbols(_gene_names(adata.var), gene_name_to_ensembl)
    log.info("%s: gene names: %s", source, stats)
    return canonical_anndata(counts, gene_ids, adata.obs[obs_columns].copy(), source)


def prepare_pancreas(h5ad_path: str | Path, gene_name_to_ensembl: dict[str, str],
                     label_column: str = "celltype", batch_column: str = "tech") -> anndata.AnnData:
    """scIB's human_pancreas_norm_complexBatch.h5ad as canonical AnnData.

    The file keeps its counts in layers['counts'] (X is normalized), gene symbols as var names,
    labels in obs['celltype'] and the technology in obs['tech']; written here as obs['cell_type'],
    obs['batch'] and obs['technology']. Its non-UMI technologies store non-integer values in
    layers['counts'], which are rounded with a warning (see _rounded_counts).
    """
    source = str(h5ad_path)
    adata = read_h5ad(h5ad_path)
    _require_obs_columns(adata.obs, [label_column, batch_column], source)
    if "counts" not in adata.layers:
        raise InputError(source, "has no layers['counts'], where scIB's pancreas file keeps its counts",
                         "use human_pancreas_norm_complexBatch.h5ad from the scIB figshare collection")
    counts = _rounded_counts(sp.csr_matrix(adata.layers["counts"]), adata.obs[batch_column], source)
    gene_ids, stats = map_gene_symbols(_gene_names(adata.var), gene_name_to_ensembl)
    log.info("%s: gene names: %s", source, stats)
    technology = adata.obs[batch_column].astype(str).to_numpy()
    obs = pd.DataFrame(
        {"cell_type": adata.obs[label_column].astype(str).to_numpy(), "batch": technology, "technology": technology},
        index=adata.obs_names,
    )
    return canonical_anndata(counts, gene_ids, obs, source)


def _read_annotation(path: str | Path, header_words: set[str]) -> pd.DataFrame:
    """A GEO annotation table (whitespace-separated, headerless or not): id and an optional name."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False)
    except Exception as error:  # pandas, gzip and zlib raise many types for an unreadable file
        raise InputError(str(path), f"cannot be read as a GEO annotation table ({type(error).__name__}: {error})",
                         "pass the gzipped, tab-separated annotation file from GEO unchanged") from error
    if table.iloc[0, 0].lower() in header_words:
        table = table.iloc[1:]
    names = table.iloc[:, 1].to_numpy() if table.shape[1] > 1 else np.full(len(table), "", dtype=object)
    return pd.DataFrame({"id": table.iloc[:, 0].to_numpy(), "name": names})


def _read_triplets(path: str | Path, n_genes: int, n_cells: int) -> sp.csr_matrix:
    """GEO's UMI.count.matrix: headerless lines 'gene_index cell_index count' (1-based, genes x
    cells), read in chunks and returned as cells x genes CSR int32."""
    source = str(path)
    genes, cells, values = [], [], []
    try:
        reader = pd.read_csv(path, sep=r"\s+", header=None, names=["gene", "cell", "count"],
                             dtype={"gene": np.int64, "cell": np.int64, "count": np.float64},
                             chunksize=TRIPLET_CHUNK_ROWS)
        for chunk in tqdm(reader, desc="count triplets", unit="chunk", file=sys.stderr):
            genes.append(chunk["gene"].to_numpy())
            cells.append(chunk["cell"].to_numpy())
            values.append(chunk["count"].to_numpy())
    except Exception as error:  # pandas, gzip and zlib raise many types for an unreadable file
        raise InputError(source, f"cannot be read as 'gene cell count' triplets ({type(error).__name__}: {error})",
                         "pass GEO's gzipped UMI.count.matrix file unchanged") from error
    gene = np.concatenate(genes) if genes else np.zeros(0, dtype=np.int64)
    cell = np.concatenate(cells) if cells else np.zeros(0, dtype=np.int64)
    value = np.concatenate(values) if values else np.zeros(0)
    for name, index, size in (("gene", gene, n_genes), ("cell", cell, n_cells)):
        if index.size and (index.min() < 1 or index.max() > size):
            raise InputError(source, f"{name} indices span {index.min()}-{index.max()}, outside 1-{size} "
                                     f"(the {name} annotation file has {size} rows)",
                             "pass the matrix and annotation files of the same GEO sample")
    matrix = sp.csr_matrix((value, (cell - 1, gene - 1)), shape=(n_cells, n_genes))
    problem = _count_problem(matrix)
    if problem is not None:
        raise InputError(source, f"the counts are not raw: {problem}", "pass GEO's UMI.count.matrix file unchanged")
    return _as_int32_counts(matrix)


def read_geo_triplets(matrix_gz: str | Path, genes_gz: str | Path, cells_gz: str | Path) -> anndata.AnnData:
    """A GEO sci-RNA-seq sample (e.g. GSM4150377) as AnnData with raw counts in X.

    Files: *_UMI.count.matrix.gz (headerless 'gene_index cell_index count', 1-based, genes x cells),
    *_gene.annotations.txt.gz (rows 'id gene_short_name', in matrix row order) and
    *_cell.annotations.txt.gz (rows 'cell sample', in matrix column order). var keeps the versioned
    IDs as given (index 'id', column 'gene_short_name'); obs is indexed by cell barcode.
    """
    genes = _read_annotation(genes_gz, {"id", "gene_id"})
    cells = _read_annotation(cells_gz, {"cell", "barcode"})
    counts = _read_triplets(matrix_gz, n_genes=len(genes), n_cells=len(cells))
    obs = pd.DataFrame({"sample": cells["name"].to_numpy()}, index=pd.Index(cells["id"].to_numpy(), name="cell"))
    var = pd.DataFrame({"gene_short_name": genes["name"].to_numpy()}, index=pd.Index(genes["id"].to_numpy(), name="id"))
    return anndata.AnnData(X=counts, obs=obs, var=var)


def _read_pdata(path: str | Path) -> pd.DataFrame:
    """The sample's pData (R write.table: space-separated, quoted, cell barcodes as row names;
    a 'Cell' or 'cell' column, when present, holds the barcode too), indexed by barcode."""
    source = str(path)
    try:
        table = pd.read_csv(path, sep=" ", quotechar='"', low_memory=False)
    except Exception as error:  # pandas, gzip and zlib raise many types for an unreadable file
        raise InputError(source, f"cannot be read as the space-separated pData table ({type(error).__name__}: "
                                 f"{error})",
                         "pass GEO's gzipped pData.txt file unchanged") from error
    for column in ("Cell", "cell"):
        if column in table.columns:
            table = table.set_index(column)
            break
    table.index = table.index.astype(str)
    missing = [column for column in SCIPLEX2_PDATA_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(source, f"lacks the hash assignment column(s) {missing} (it has {list(table.columns)})",
                         "pass the sample's pData.txt.gz from GEO")
    if not table.index.is_unique:
        raise InputError(source, "lists a cell barcode more than once", "pass GEO's pData.txt.gz unchanged")
    return table


def prepare_sciplex2(matrix_gz: str | Path, genes_gz: str | Path, cells_gz: str | Path, pdata_gz: str | Path,
                     drug: str = "Nutlin", treatment_label: str = "nutlin3a",
                     min_hash_umis: float = SCIPLEX2_MIN_HASH_UMIS,
                     min_top_to_second_ratio: float = SCIPLEX2_MIN_TOP_TO_SECOND_RATIO,
                     max_qval: float = SCIPLEX2_MAX_QVAL) -> anndata.AnnData:
    """sci-Plex2 (GEO GSM4150377, A549) nutlin-3A and vehicle cells as canonical AnnData.

    Treatment and dose come from the hash assignment in pData.txt.gz: top_oligo reads
    '<drug>_<dose in µM>_<well oligo>' (e.g. 'Nutlin_0.5_AA06'; drugs BMS, Dex, Nutlin, SAHA; doses
    0, 0.1, 0.5, 1, 5, 10, 50, 100, where 0 is the drug's vehicle well). Cells pass the authors'
    hash filters (hash_umis, top_to_second_best_ratio, qval); cells of `drug` are kept: obs['dose']
    the µM dose as a string ('0' for vehicle), obs['treatment'] 'vehicle' or `treatment_label`,
    obs['replicate'] 'rep1'-'rep3' from the culture well column (01/04/07/10 -> rep1, 02/05/08/11
    -> rep2, 03/06/09/12 -> rep3, as in the authors' notebook), obs['well'] the well oligo.
    Vehicle cells are those of the drug's own dose-0 wells, not the other drugs' vehicle wells.
    """
    source = str(matrix_gz)
    adata = read_geo_triplets(matrix_gz, genes_gz, cells_gz)
    meta = _read_pdata(pdata_gz).reindex(adata.obs_names)
    passed = (
        meta["top_oligo"].notna()
        & (pd.to_numeric(meta["hash_umis"], errors="coerce") > min_hash_umis)
        & (pd.to_numeric(meta["top_to_second_best_ratio"], errors="coerce") > min_top_to_second_ratio)
        & (pd.to_numeric(meta["qval"], errors="coerce") < max_qval)
    )
    fields = meta["top_oligo"].astype(str).str.split("_", n=2, expand=True).reindex(columns=range(3))
    dose = pd.to_numeric(fields[1], errors="coerce")
    keep = (passed & (fields[0] == drug) & dose.notna()).to_numpy()
    log.info("%s: %d cells, %d with pData, %d pass the hash filters, %d of %s", source, adata.n_obs,
             int(meta["top_oligo"].notna().sum()), int(passed.sum()), int(keep.sum()), drug)
    if not keep.any():
        drugs = sorted(fields[0][passed].unique())
        raise InputError(str(pdata_gz), f"no cell passing the hash filters is assigned to {drug!r} (drugs: {drugs})",
                         "check that the pData file belongs to the count matrix, and the drug name")
    dose, well = dose[keep], fields[2][keep].astype(str)
    well_number = pd.to_numeric(well.str[-2:], errors="coerce")
    replicate = ("rep" + ((well_number - 1) % 3 + 1).astype("Int64").astype(str)).where(well_number.notna(), "unknown")
    obs = pd.DataFrame(
        {
            "dose": dose.map(dose_label).to_numpy(),
            "treatment": np.where(dose.to_numpy() == 0, "vehicle", treatment_label),
            "replicate": replicate.to_numpy(),
            "well": well.to_numpy(),
        },
        index=adata.obs_names[keep],
    )
    gene_ids, stats = map_gene_symbols(adata.var_names.to_numpy(), {})
    log.info("%s: gene ids: %s; cells per dose: %s", source, stats, obs["dose"].value_counts().to_dict())
    return canonical_anndata(adata.X[keep], gene_ids, obs, source)


def prepare_cardiomyopathy(h5ad_path: str | Path, gene_name_to_ensembl: dict[str, str],
                           cell_type_column: str = "cell_type_leiden0.6",
                           cardiomyocyte_labels: tuple[str, ...] = CHAFFIN_CARDIOMYOCYTES,
                           disease_column: str = "disease", donor_column: str = "donor_id",
                           diseases: tuple[str, ...] = CARDIOMYOPATHY_DISEASES) -> anndata.AnnData:
    """Chaffin et al. 2022 (Single Cell Portal SCP1303, human_dcm_hcm_scportal_03.17.2022.h5ad)
    cardiomyocytes of NF, HCM and DCM hearts as canonical AnnData with obs['disease'], obs['donor']
    and obs['cell_type'] (the cardiomyocyte subtype).

    The file (~590k nuclei) is opened backed and only the selected rows are loaded. Its counts are
    found by find_raw_counts (X holds CellBender-corrected integer counts; layers['cellranger_raw']
    is not used); genes come from var['gene_ids'] (var names are symbols).
    """
    source = str(h5ad_path)
    columns = [cell_type_column, disease_column, donor_column]
    with open_backed(h5ad_path) as backed:
        _require_obs_columns(backed.obs, columns, source)
        cell_type = backed.obs[cell_type_column].astype(str)
        selected = (cell_type.isin(cardiomyocyte_labels) & backed.obs[disease_column].astype(str).isin(diseases))
        if not selected.any():
            raise InputError(
                source,
                f"no cell has {cell_type_column} in {list(cardiomyocyte_labels)} and {disease_column} in "
                f"{list(diseases)} (cell types: {sorted(cell_type.unique())[:20]}, diseases: "
                f"{sorted(backed.obs[disease_column].astype(str).unique())})",
                "set the cell type column, cardiomyocyte labels and disease values to those of the file",
            )
        adata = backed[selected.to_numpy()].to_memory()
    counts, _ = find_raw_counts(adata, source)
    gene_ids, stats = map_gene_symbols(_gene_names(adata.var), gene_name_to_ensembl)
    log.info("%s: %d cardiomyocytes; gene names: %s", source, adata.n_obs, stats)
    obs = pd.DataFrame(
        {
            "disease": adata.obs[disease_column].astype(str).to_numpy(),
            "donor": adata.obs[donor_column].astype(str).to_numpy(),
            "cell_type": adata.obs[cell_type_column].astype(str).to_numpy(),
        },
        index=adata.obs_names,
    )
    return canonical_anndata(counts, gene_ids, obs, source)


# ---------------------------------------------------------------------------------------------
# Gene label lists
# ---------------------------------------------------------------------------------------------

def read_gene_list_labels(gene_lists: dict, class_labels: dict[str, str], source: str) -> pd.DataFrame:
    """Geneformer's {list name: [Ensembl IDs]} as the gene label table (ensembl_id, label), sorted.

    Missing entries (NaN) are dropped with a warning; versions are stripped; a gene in two lists
    or a name that is not an Ensembl ID is refused, since the label file needs one label per ID.
    """
    missing = [name for name in class_labels if name not in gene_lists]
    if missing:
        raise InputError(source, f"lacks the gene list(s) {missing} (it has {list(gene_lists)})",
                         "pass Geneformer's dosage_sensitivity_TFs.pickle or a dict with these keys")
    frames = []
    for name, label in class_labels.items():
        genes = gene_lists[name]
        if not isinstance(genes, (list, tuple)):
            raise InputError(source, f"{name!r} holds a {type(genes).__name__}, not a list of gene ids",
                             "store each class as a list of Ensembl IDs")
        present = pd.Series([gene for gene in genes if isinstance(gene, str)], dtype=object)
        if len(present) < len(genes):
            log.warning("%s: %d missing entries in %r dropped", source, len(genes) - len(present), name)
        ids = present.str.extract(ENSEMBL_PATTERN, expand=False)
        if ids.isna().any():
            raise InputError(source, f"{name!r} holds names that are not human Ensembl IDs, e.g. "
                                     f"{list(present[ids.isna()][:3])}", "list genes by Ensembl ID (ENSG...)")
        frames.append(pd.DataFrame({"ensembl_id": ids.drop_duplicates().to_numpy(dtype=str), "label": label}))
    labels = pd.concat(frames, ignore_index=True)
    repeated = labels["ensembl_id"][labels["ensembl_id"].duplicated()].unique()
    if len(repeated):
        raise InputError(source, f"{len(repeated)} genes are in more than one list, e.g. {list(repeated[:3])}",
                         "give each gene one class")
    log.info("%s: %s", source, labels["label"].value_counts().to_dict())
    return labels.sort_values("ensembl_id", ignore_index=True)


def gene_labels_from_pickle(path: str | Path, output_tsv: str | Path) -> pd.DataFrame:
    """A gene class pickle in Geneformer's format ({class name: [Ensembl IDs]}) as the gene label TSV
    (ensembl_id, label), read only through the restricted unpickler. Geneformer's dosage TF lists get
    the labels dosage_sensitive / dosage_insensitive; other class names are kept as the labels."""
    gene_lists = safe_load_pickle(path)
    if len(gene_lists) < 2:
        raise InputError(str(path), f"holds {len(gene_lists)} gene list(s); a classification needs two or more",
                         "store {class name: [Ensembl IDs]} with one entry per class")
    classes = DOSAGE_CLASSES if set(DOSAGE_CLASSES) <= set(gene_lists) else {name: name for name in gene_lists}
    labels = read_gene_list_labels(gene_lists, classes, str(path))
    write_tsv(labels, output_tsv)
    return labels


# format -> (preparer, {input file key: the preparer's parameter for that file})
PREPARERS = {
    "anndata": (read_user_h5ad, {"h5ad": "path"}),
    "scib_pancreas": (prepare_pancreas, {"h5ad": "h5ad_path"}),
    "sciplex2_geo": (prepare_sciplex2, {"matrix": "matrix_gz", "genes": "genes_gz", "cells": "cells_gz",
                                        "pdata": "pdata_gz"}),
    "chaffin_cardiomyopathy": (prepare_cardiomyopathy, {"h5ad": "h5ad_path"}),
}


def prepare_dataset(settings: DatasetSettings, inputs: dict[str, str], obs_columns: list[str],
                    output_h5ad: str | Path) -> None:
    """Turn one source (the user's h5ad, or a downloaded dataset) into the canonical h5ad the workflow
    reads, with the preparer of settings.format. settings.options are the preparer's keyword arguments
    (e.g. drug for sciplex2_geo); every `obs_columns` entry an experiment uses must be present afterwards."""
    preparer, file_parameters = PREPARERS[settings.format]
    missing = sorted(set(file_parameters) - set(inputs))
    if missing:
        raise InputError(f"{settings.format} inputs", f"lack {missing}", f"give the files {sorted(file_parameters)}")
    parameters = inspect.signature(preparer).parameters
    fixed = {"obs_columns", "gene_name_to_ensembl", *file_parameters.values()}
    unknown = sorted(set(settings.options) - (set(parameters) - fixed))
    if unknown:
        raise InputError(f"{settings.format} options", f"unknown option(s) {unknown}",
                         f"use among {sorted(set(parameters) - fixed)}")
    arguments = {parameter: inputs[key] for key, parameter in file_parameters.items()} | settings.options
    if "gene_name_to_ensembl" in parameters:
        arguments["gene_name_to_ensembl"] = load_gene_name_dictionary()
    if "obs_columns" in parameters:
        arguments["obs_columns"] = obs_columns
    adata = preparer(**arguments)
    _require_obs_columns(adata.obs, obs_columns, str(output_h5ad))
    write_canonical_h5ad(adata, output_h5ad)
