"""Measured fast paths: the workflow's vectorized gene medians and tokenizer against the plain loops a
first implementation would use, on the same simulated file, in one run. Not a test: run it, read the
ratios, and copy them with the machine into benchmarks/README.md. Every approach runs once per round, in
turn, and is reported by its median over the rounds.

    python benchmarks/speed.py --cells 20000 --output benchmarks/latest.md

Plain approaches per step (reading is not timed apart:
every approach reads the file inside its timing; the loops keep their tokens in memory, so the workflow's
tokenizer is timed twice: as the whole step, which also writes the `datasets` directory, and as read +
encode only, the like-for-like comparison; each with one thread and with `--threads` worker threads, while
every loop runs on one):
- tuned loops, the matrix held in memory: medians = one np.median per gene over the indptr slice of a CSC
  matrix; tokenization = one numpy iteration per cell over the indptr slice of the CSR matrix;
- straightforward loops, as Geneformer's reference code and a first implementation write them:
  medians = for each gene, column `X[:, j]` of the CSR matrix as read (no CSC conversion), its
  non-zero normalized values, np.median; tokenization = chunks of 512 rows, each normalized as a
  scipy sparse matrix (count / n_counts * 10,000 / median), then per cell `X_norm[i]` (scipy row
  indexing, `.data`, `.indices`), sort, map to tokens, cut. Geneformer reads the file backed (from
  disk) chunk by chunk; here it is read into memory first, which can only make the reference faster.
  The CSR column loop can be timed on an evenly spaced subset of genes (`--column-loop-genes`) and
  extrapolated to all genes; the table then says so.
- Geneformer's published tokenizer code path, end to end (`published_tokenize`): the file read
  backed, scipy normalization, `X_norm[i]` + `np.argsort` per cell, then a Hugging Face dataset built
  with `from_dict`, cut by `map` and written by `save_to_disk`, as the workflow's own step writes one.
  Its outputs are compared up to the order of tied values (its argsort is not stable).
The two kinds of loop above evaluate count / n_counts * 10,000 (/ median) in the workflow's order and order tied
values by ascending token id (Geneformer's own argsort leaves ties in arbitrary order), so outputs must
be identical, and are compared. Peak memory of each workflow step is measured in a child process
(`--memory-cells` for a large file, e.g. 200000).
The process is tuned as every workflow job is (workflow_scripts/process_tuning.py) before numpy is imported,
so the loops run with the same settings; WORKFLOW_PROCESS_TUNING=off measures without them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from workflow_scripts.core.process_tuning import tune_process

# as in every workflow job, before numpy is imported; the loops run in this process, so they get the same
PROCESS_SETTINGS = tune_process()

import anndata  # noqa: E402
import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from workflow_scripts.core.config import load_config  # noqa: E402
from workflow_scripts.simulate.settings import SimulationSettings  # noqa: E402
from workflow_scripts.simulate.simulator import simulate_dataset  # noqa: E402

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "config.yaml"  # noqa: E402
from workflow_scripts.core.counts import TARGET_SUM, iter_count_chunks, read_gene_ids  # noqa: E402
from workflow_scripts.core.dictionaries import (  # noqa: E402
    gene_vocabulary,
    load_median_dictionary,
    load_token_dictionary,
)
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings  # noqa: E402
from workflow_scripts.reference.medians import build_reference, compute_gene_medians  # noqa: E402
from workflow_scripts.reference.settings import ReferenceSettings  # noqa: E402
from workflow_scripts.tokenization.tokenizer import (  # noqa: E402
    ordered_map,
    rank_value_encode,
    tokenize_dataset,
)

MODEL_INPUT_SIZE = 2048  # Geneformer V1: long encodings are where a per-cell loop hurts most
CHUNK_SIZE = load_config(REPO_CONFIG).get("tokenizer")["chunk_size"]  # the embedded default's, as the workflow streams
REFERENCE_CHUNK_SIZE = 512  # Geneformer's tokenizer normalizes 512 cells at a time
TOKENIZER = TokenizerSettings(model_input_size=MODEL_INPUT_SIZE, special_tokens=False, chunk_size=CHUNK_SIZE)
CHECKS = ChecksSettings(min_genes_in_vocabulary=1, min_genes_per_class=2, min_count_share_in_vocabulary=0.5)  # the benchmark stops on nothing
SETTINGS_IMPORT = "from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings"  # for their reprs


def simulated_file(directory: Path, n_cells: int) -> Path:
    """A corpus-like raw-count h5ad of n_cells from the embedded default's world."""
    simulation = load_config(REPO_CONFIG).get("simulation")
    simulation = {**simulation, "corpus": {**simulation["corpus"], "n_cells": n_cells}}
    path = directory / f"corpus_{n_cells}.h5ad"
    simulate_dataset("corpus", SimulationSettings.from_config(simulation), 42, path,
                     directory / f"corpus_{n_cells}.truth.json")
    return path


def plain_medians(h5ad: Path) -> pd.Series:
    """One np.median per gene over its non-zero count / n_counts * 10,000."""
    adata = anndata.read_h5ad(h5ad)
    normalized = sp.csc_matrix(adata.X, dtype=np.float64)
    n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)
    normalized.data = normalized.data / n_counts[normalized.indices] * TARGET_SUM
    medians = {}
    for column, gene in enumerate(adata.var_names):
        values = normalized.data[normalized.indptr[column]:normalized.indptr[column + 1]]
        if values.size:
            medians[gene] = float(np.median(values))
    return pd.Series(medians)


def plain_tokenize(h5ad: Path, token_tsv: Path, medians_tsv: Path) -> list[list[int]]:
    """Geneformer's approach: for each cell, normalize its row, sort genes by value, keep the first 2,048."""
    adata = anndata.read_h5ad(h5ad)
    tokens = pd.Series(load_token_dictionary(str(token_tsv)))
    medians = pd.Series(load_median_dictionary(str(medians_tsv)))
    genes = pd.Index(adata.var_names)
    known = genes.isin(medians.index) & genes.isin(tokens.index)
    gene_token = np.where(known, tokens.reindex(genes).fillna(-1).to_numpy(), -1).astype(np.int64)
    gene_median = medians.reindex(genes).to_numpy()
    matrix, n_counts = sp.csr_matrix(adata.X), adata.obs["n_counts"].to_numpy(dtype=np.float64)
    cells = []
    for row in range(matrix.shape[0]):
        columns = matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]]
        counts = matrix.data[matrix.indptr[row]:matrix.indptr[row + 1]]
        keep = gene_token[columns] >= 0
        values = counts[keep].astype(np.float64) / n_counts[row] * TARGET_SUM / gene_median[columns[keep]]
        ids = gene_token[columns[keep]]
        order = np.lexsort((ids, -values))  # value descending, ties by ascending token id (the workflow's rule)
        cells.append(ids[order][:MODEL_INPUT_SIZE].tolist())
    return cells


def csr_column_medians(h5ad: Path, n_genes: int | None) -> tuple[pd.Series, pd.Index]:
    """Per gene: column X[:, j] of the CSR matrix as read, its non-zero count / n_counts * 10,000, np.median.

    With n_genes, only that many evenly spaced genes (for a time to extrapolate); returns the
    medians and the genes looped over.
    """
    adata = anndata.read_h5ad(h5ad)
    matrix = sp.csr_matrix(adata.X)
    n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)
    columns = np.arange(matrix.shape[1])
    if n_genes is not None and n_genes < columns.size:
        columns = np.unique(np.linspace(0, columns.size - 1, n_genes).round().astype(np.int64))
    medians = {}
    for column in columns:
        counts = matrix[:, column].toarray().ravel()
        expressed = counts != 0
        if expressed.any():
            medians[adata.var_names[column]] = float(np.median(counts[expressed] / n_counts[expressed] * TARGET_SUM))
    return pd.Series(medians, dtype=np.float64), adata.var_names[columns]


def workflow_encode(
    h5ad: Path, token_tsv: Path, medians_tsv: Path, threads: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The workflow's tokenizer without writing its dataset (read + encode, what the loops time): per chunk,
    the concatenated token ids and each cell's length."""
    tokens, medians = load_token_dictionary(str(token_tsv)), load_median_dictionary(str(medians_tsv))
    gene_token, gene_median = gene_vocabulary(read_gene_ids(h5ad), tokens, medians, str(h5ad), 1)
    return list(ordered_map(lambda chunk: rank_value_encode(chunk, gene_token, gene_median, MODEL_INPUT_SIZE),
                            iter_count_chunks(h5ad, CHUNK_SIZE), threads))


def as_cells(encoded: list[tuple[np.ndarray, np.ndarray]]) -> list[list[int]]:
    """Per-cell token lists, as the loops return them (for the identity check, outside the timing)."""
    return [cell.tolist() for tokens, lengths in encoded for cell in np.split(tokens, np.cumsum(lengths)[:-1])]


def reference_tokenize(h5ad: Path, token_tsv: Path, medians_tsv: Path) -> list[list[int]]:
    """Geneformer's reference tokenizer: 512-cell chunks of the vocabulary genes normalized as scipy
    sparse matrices, then per cell a scipy row `X_norm[i]`, its values sorted descending and mapped
    to tokens, cut."""
    adata = anndata.read_h5ad(h5ad)
    tokens = load_token_dictionary(str(token_tsv))
    medians = load_median_dictionary(str(medians_tsv))
    genes = np.asarray(adata.var_names)
    known = np.flatnonzero([gene in tokens and gene in medians for gene in genes])
    gene_tokens = np.array([tokens[gene] for gene in genes[known]], dtype=np.int64)
    gene_medians = np.array([medians[gene] for gene in genes[known]], dtype=np.float64)
    matrix = sp.csr_matrix(adata.X)
    n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)
    cells = []
    for start in range(0, matrix.shape[0], REFERENCE_CHUNK_SIZE):
        normalized = sp.csr_matrix(matrix[start:start + REFERENCE_CHUNK_SIZE][:, known], dtype=np.float64)
        # true divisions, in the workflow's order: scipy's `X / dense` multiplies by reciprocals, which moves last
        # bits and so the order of near-tied genes (Geneformer's code inherits that); it is also a little slower
        cell_counts = np.repeat(n_counts[start:start + REFERENCE_CHUNK_SIZE], np.diff(normalized.indptr))
        normalized.data = normalized.data / cell_counts * TARGET_SUM / gene_medians[normalized.indices]
        for row in range(normalized.shape[0]):
            values, ids = normalized[row].data, gene_tokens[normalized[row].indices]
            order = np.lexsort((ids, -values))  # value descending, ties by ascending token id (the workflow's rule)
            cells.append(ids[order][:MODEL_INPUT_SIZE].tolist())
    return cells


def published_tokenize(h5ad: Path, token_tsv: Path, medians_tsv: Path, output_dir: Path) -> None:
    """Geneformer's V1 TranscriptomeTokenizer code path for an h5ad, end to end: the file read backed,
    512-cell chunks `adata[idx, genes].X` normalized by scipy (`X / n_counts * target_sum / medians`),
    per cell `X_norm[i]` sorted by np.argsort(-values), then `Dataset.from_dict`, a `map` cutting each
    cell to the input size and adding its length, and `save_to_disk` - what a user runs today."""
    adata = anndata.read_h5ad(h5ad, backed="r")
    tokens = load_token_dictionary(str(token_tsv))
    medians = load_median_dictionary(str(medians_tsv))
    ensembl_ids = adata.var_names
    coding_loc = np.where([gene in tokens and gene in medians for gene in ensembl_ids])[0]
    norm_factor_vector = np.array([medians[gene] for gene in ensembl_ids[coding_loc]])
    coding_tokens = np.array([tokens[gene] for gene in ensembl_ids[coding_loc]])
    cell_loc = np.arange(adata.n_obs)
    tokenized_cells = []
    for start in range(0, cell_loc.size, REFERENCE_CHUNK_SIZE):
        idx = cell_loc[start:start + REFERENCE_CHUNK_SIZE]
        n_counts = adata[idx].obs["n_counts"].to_numpy()[:, None]
        x_norm = sp.csr_matrix(adata[idx, coding_loc].X / n_counts * TARGET_SUM / norm_factor_vector)
        tokenized_cells += [coding_tokens[x_norm[i].indices][np.argsort(-x_norm[i].data)]
                            for i in range(x_norm.shape[0])]
    adata.file.close()

    def format_cell_features(example):
        example["input_ids"] = example["input_ids"][0:MODEL_INPUT_SIZE]
        example["length"] = len(example["input_ids"])
        return example

    dataset = datasets.Dataset.from_dict({"input_ids": tokenized_cells}).map(format_cell_features)
    dataset.save_to_disk(str(output_dir))


def same_ranking(workflow_cells: list[list[int]], other_cells: list[list[int]], h5ad: Path, token_tsv: Path,
                 medians_tsv: Path) -> bool:
    """Same genes per cell, and the other order never puts a lower value first (beyond 1e-12 relative):
    identical up to the order of tied values, which Geneformer's unstable argsort leaves arbitrary, and
    scipy's reciprocal multiplication can break ties by a last bit."""
    if [sorted(cell) for cell in workflow_cells] != [sorted(cell) for cell in other_cells]:
        return False
    adata = anndata.read_h5ad(h5ad)
    tokens, medians = load_token_dictionary(str(token_tsv)), load_median_dictionary(str(medians_tsv))
    column_of_token = {tokens[gene]: column for column, gene in enumerate(adata.var_names) if gene in tokens}
    matrix = sp.csr_matrix(adata.X, dtype=np.float64).toarray()
    gene_median = np.array([medians.get(gene, np.nan) for gene in adata.var_names])
    values = matrix / adata.obs["n_counts"].to_numpy(dtype=np.float64)[:, None] * TARGET_SUM / gene_median
    lengths = np.array([len(cell) for cell in other_cells])
    rows = np.repeat(np.arange(len(other_cells)), lengths)
    columns = np.array([column_of_token[token] for cell in other_cells for token in cell], dtype=np.int64)
    ordered = values[rows, columns]
    same_cell = rows[1:] == rows[:-1]
    return bool(np.all(ordered[1:][same_cell] <= ordered[:-1][same_cell] * (1 + 1e-12)))


def timed_rounds(approaches: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, float], dict]:
    """Median seconds of each approach over `rounds` rounds in which the approaches take turns (this VM's
    speed drifts by up to 1.5x within minutes, so a turn each keeps the ratios fair), and each one's last
    result."""
    seconds: dict[str, list[float]] = {name: [] for name in approaches}
    results = {}
    for _ in range(rounds):
        for name, approach in approaches.items():
            start = time.perf_counter()
            results[name] = approach()
            seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}, results


def peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running `code`, from GNU time.

    Not RUSAGE_CHILDREN: a child forked from this process starts with this process's resident
    pages (the large simulated file), and that high-water mark survives its exec.
    """
    code = f"from workflow_scripts.core.process_tuning import tune_process; tune_process(); {code}"  # as a workflow job
    result = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code], check=True,
                            capture_output=True, text=True)
    return int(result.stderr.strip().splitlines()[-1]) / 1024


def same_medians(written: pd.Series, computed: pd.Series) -> bool:
    """The TSV holds 16 significant digits: equal up to that text round trip."""
    return bool(written.index.equals(computed.index) and np.allclose(written, computed, rtol=1e-15, atol=0))


def measure(
    n_cells: int, memory_cells: int | None, column_loop_genes: int | None, threads: int, rounds: int, work: Path
) -> dict:
    h5ad = simulated_file(work, n_cells)
    medians_tsv, token_tsv, used_tsv = work / "medians.tsv", work / "tokens.tsv", work / "used.tsv"
    median_seconds, median_results = timed_rounds({
        "workflow": lambda: compute_gene_medians(h5ad, medians_tsv, TOKENIZER),
        "per_gene_loop": lambda: plain_medians(h5ad),
        "csr_column_loop": lambda: csr_column_medians(h5ad, column_loop_genes),
    }, rounds)
    column_medians, looped_genes = median_results["csr_column_loop"]
    fast = pd.read_csv(medians_tsv, sep="\t").set_index("ensembl_id")["median"]
    medians_identical = same_medians(fast, median_results["per_gene_loop"])
    column_identical = same_medians(fast[fast.index.isin(looped_genes)], column_medians)  # on the genes looped over
    n_genes = anndata.read_h5ad(h5ad, backed="r").n_vars
    column_all_genes_s = median_seconds["csr_column_loop"] * n_genes / looped_genes.size  # the loop's cost is per gene

    build_reference(ReferenceSettings(medians="corpus", token_dictionary="corpus"), TOKENIZER, medians_tsv, token_tsv,
                    used_tsv)
    thread_counts = sorted({1, threads})
    approaches = {
        "per_cell_loop": lambda: plain_tokenize(h5ad, token_tsv, used_tsv),
        "reference": lambda: reference_tokenize(h5ad, token_tsv, used_tsv),
        "published": lambda: published_tokenize(h5ad, token_tsv, used_tsv, work / "published.dataset"),
    }
    for count in thread_counts:
        approaches[f"step_{count}"] = partial(tokenize_dataset, h5ad, token_tsv, used_tsv,
                                              work / f"tokens_{count}.dataset", TOKENIZER, CHECKS, [], count)
        approaches[f"encode_{count}"] = partial(workflow_encode, h5ad, token_tsv, used_tsv, count)
    token_seconds, token_results = timed_rounds(approaches, rounds)
    plain_tokens_s, reference_tokens_s = token_seconds["per_cell_loop"], token_seconds["reference"]
    published_tokens_s = token_seconds["published"]
    plain_cells, reference_cells = token_results["per_cell_loop"], token_results["reference"]
    published_cells = datasets.load_from_disk(str(work / "published.dataset"))["input_ids"]
    workflow = {count: {"step_s": token_seconds[f"step_{count}"], "encode_s": token_seconds[f"encode_{count}"],
                        "encoded": token_results[f"encode_{count}"]} for count in thread_counts}

    tokenization = {
        "per_cell_loop_cells_per_s": n_cells / plain_tokens_s,
        "reference_cells_per_s": n_cells / reference_tokens_s,
        "published_cells_per_s": n_cells / published_tokens_s,
        "workflow_by_threads": {},
    }
    for count, run in workflow.items():  # per-cell lists only now: millions of Python ints slow what is timed
        step_cells = datasets.load_from_disk(str(work / f"tokens_{count}.dataset"))["input_ids"]
        encoded_cells = as_cells(run["encoded"])
        tokenization["workflow_by_threads"][count] = {
            "step_cells_per_s": n_cells / run["step_s"], "encode_cells_per_s": n_cells / run["encode_s"],
            "step_speedup": plain_tokens_s / run["step_s"], "step_identical": step_cells == plain_cells,
            "step_speedup_vs_reference": reference_tokens_s / run["step_s"],
            "step_reference_identical": step_cells == reference_cells,
            "encode_speedup": plain_tokens_s / run["encode_s"], "encode_identical": encoded_cells == plain_cells,
            "encode_speedup_vs_reference": reference_tokens_s / run["encode_s"],
            "encode_reference_identical": encoded_cells == reference_cells,
            "step_speedup_vs_published": published_tokens_s / run["step_s"],
            "published_identical": step_cells == published_cells,
            "published_same_ranking": same_ranking(step_cells, published_cells, h5ad, token_tsv, used_tsv),
        }
    results = {
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}",
        "process_settings": PROCESS_SETTINGS, "cells": n_cells, "genes": n_genes,
        "medians": {"workflow_s": median_seconds["workflow"], "per_gene_loop_s": median_seconds["per_gene_loop"],
                    "speedup": median_seconds["per_gene_loop"] / median_seconds["workflow"],
                    "identical": medians_identical,
                    "csr_column_loop_s": column_all_genes_s, "csr_column_loop_genes_timed": looped_genes.size,
                    "csr_column_loop_extrapolated": looped_genes.size < n_genes,
                    "csr_column_speedup": column_all_genes_s / median_seconds["workflow"],
                    "csr_column_identical": column_identical},
        "tokenization": tokenization, "rounds": rounds,
    }
    if memory_cells:
        large = simulated_file(work, memory_cells)
        results["memory"] = {
            "cells": memory_cells,
            "medians_peak_rss_mb": peak_rss_mb(
                f"{SETTINGS_IMPORT}; from workflow_scripts.reference.medians import compute_gene_medians; "
                f"compute_gene_medians({str(large)!r}, {str(work / 'large_medians.tsv')!r}, {TOKENIZER!r})"),
            "tokenize_peak_rss_mb_by_threads": {count: peak_rss_mb(
                f"{SETTINGS_IMPORT}; from workflow_scripts.tokenization.tokenizer import tokenize_dataset; "
                f"tokenize_dataset({str(large)!r}, {str(token_tsv)!r}, {str(used_tsv)!r}, "
                f"{str(work / f'large_{count}.dataset')!r}, {TOKENIZER!r}, {CHECKS!r}, [], {count})")
                for count in thread_counts},
        }
    return results


def as_markdown(results: dict) -> str:
    medians, tokens = results["medians"], results["tokenization"]
    column_loop = f"{medians['csr_column_loop_s']:.2f} s (per gene, `X[:, j]` of the CSR matrix"
    if medians["csr_column_loop_extrapolated"]:
        column_loop += (f"; extrapolated from {medians['csr_column_loop_genes_timed']:,} evenly spaced genes of "
                        f"{results['genes']:,}, identity checked on those")
    column_loop += ")"
    tuned = f"{tokens['per_cell_loop_cells_per_s']:,.0f} cells/s"
    reference = f"{tokens['reference_cells_per_s']:,.0f} cells/s"
    lines = [
        f"Machine: {results['machine']}; {results['cells']:,} simulated cells x {results['genes']:,} genes; "
        f"model_input_size {MODEL_INPUT_SIZE}; the workflow streams {CHUNK_SIZE}-cell chunks. Ratios are workflow "
        f"speed / loop speed; the loops run on one thread; every time is the median of {results['rounds']} rounds "
        f"in which all approaches take turns. Process settings (workflow_scripts/process_tuning.py, for "
        f"every approach): {'; '.join(results['process_settings']) or 'none'}.",
        "",
        "| step | workflow | tuned plain loop | ratio | identical output "
        "| straightforward loop | ratio | identical output |",
        "|---|---|---|---|---|---|---|---|",
        f"| gene medians | {medians['workflow_s']:.2f} s | {medians['per_gene_loop_s']:.2f} s (per gene, CSC indptr "
        f"slices) | {medians['speedup']:.1f}x | {medians['identical']} | {column_loop} | "
        f"{medians['csr_column_speedup']:.1f}x | {medians['csr_column_identical']} |",
    ]
    for count, run in tokens["workflow_by_threads"].items():
        threads = f"{count} thread{'s' if count > 1 else ''}"
        lines += [
            f"| tokenization, whole step ({threads}) | {run['step_cells_per_s']:,.0f} cells/s | {tuned} (per cell, "
            f"CSR indptr slices) | {run['step_speedup']:.1f}x | {run['step_identical']} | {reference} (as "
            f"Geneformer's tokenizer: 512-cell sparse chunks, `X_norm[i]` per cell) | "
            f"{run['step_speedup_vs_reference']:.1f}x | {run['step_reference_identical']} |",
            f"| tokenization, read + encode ({threads}; not writing the dataset, as the loops) | "
            f"{run['encode_cells_per_s']:,.0f} cells/s | {tuned} (as above) | {run['encode_speedup']:.1f}x | "
            f"{run['encode_identical']} | {reference} (as above) | {run['encode_speedup_vs_reference']:.1f}x | "
            f"{run['encode_reference_identical']} |",
        ]
    lines += [
        "",
        "| tokenization, whole step (read, encode, write a `datasets` directory) | workflow | Geneformer's published "
        "tokenizer code path | ratio | same tokens, same ranking up to tied values | identical |",
        "|---|---|---|---|---|---|",
    ]
    for count, run in tokens["workflow_by_threads"].items():
        lines.append(
            f"| {results['cells']:,} cells, {count} thread{'s' if count > 1 else ''} | {run['step_cells_per_s']:,.0f} "
            f"cells/s | {tokens['published_cells_per_s']:,.0f} cells/s (backed h5ad, `X_norm[i]` + argsort per cell, "
            f"`Dataset.from_dict` + `map` + `save_to_disk`) | {run['step_speedup_vs_published']:.1f}x | "
            f"{run['published_same_ranking']} | {run['published_identical']} |")
    if "memory" in results:
        memory = results["memory"]
        tokenize_rss = ", ".join(f"{rss:,.0f} MB with {count} thread{'s' if count > 1 else ''}"
                                 for count, rss in memory["tokenize_peak_rss_mb_by_threads"].items())
        lines += ["", f"Peak RSS on {memory['cells']:,} cells: medians {memory['medians_peak_rss_mb']:,.0f} MB, "
                      f"tokenization {tokenize_rss}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--memory-cells", type=int, default=None, help="also measure peak RSS on this many cells")
    parser.add_argument("--column-loop-genes", type=int, default=None,
                        help="time the CSR column medians loop on this many evenly spaced genes and extrapolate "
                             "(default: all genes)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="also time the workflow's tokenizer with this many worker threads (default: all CPUs)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds in which every approach runs once, in turn; each is reported by its median")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/latest.md"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = measure(arguments.cells, arguments.memory_cells, arguments.column_loop_genes, arguments.threads,
                          arguments.rounds, Path(work))
    arguments.output.write_text(as_markdown(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
