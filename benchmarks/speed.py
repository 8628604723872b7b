"""Measured fast paths: the workflow's vectorized gene medians and tokenizer against the plain loops a
first implementation would use, on the same simulated file, in one run. Not a test: run it, read the
ratios, and copy them with the machine into benchmarks/README.md.

    python benchmarks/speed.py --cells 20000 --output benchmarks/latest.md

Plain approaches, each holding the whole matrix in memory: medians = one np.median per gene over its
non-zero normalized values (columns of a CSC matrix); tokenization = one Python iteration per cell
(normalize the row, sort, cut), as Geneformer's tokenizer does. Both evaluate count / n_counts *
10,000 (/ median) in the workflow's order, so outputs must be identical, and are compared. Peak memory of each
workflow step is measured in a child process (`--memory-cells` for a large file, e.g. 200000).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata
import datasets
import numpy as np
import pandas as pd
import scipy.sparse as sp

from workflow_scripts.config import load_config
from workflow_scripts.counts import TARGET_SUM
from workflow_scripts.dictionaries import load_median_dictionary, load_token_dictionary
from workflow_scripts.medians import build_reference, compute_gene_medians
from workflow_scripts.simulate import simulate_dataset
from workflow_scripts.tokenize import tokenize_dataset

MODEL_INPUT_SIZE = 2048  # Geneformer V1: long encodings are where a per-cell loop hurts most
CHUNK_SIZE = 2000


def simulated_file(directory: Path, n_cells: int) -> Path:
    """A corpus-like raw-count h5ad of n_cells from the embedded default's world."""
    simulation = load_config().get("simulation")
    simulation = {**simulation, "corpus": {**simulation["corpus"], "n_cells": n_cells}}
    path = directory / f"corpus_{n_cells}.h5ad"
    simulate_dataset("corpus", simulation, 42, path, directory / f"corpus_{n_cells}.truth.json")
    return path


def plain_medians(h5ad: Path) -> pd.Series:
    """One np.median per gene over its non-zero count / n_counts * 10,000."""
    adata = anndata.read_h5ad(h5ad)
    normalized = sp.csc_matrix(adata.X, dtype=np.float64)
    normalized.data = normalized.data / adata.obs["n_counts"].to_numpy(dtype=np.float64)[normalized.indices] * TARGET_SUM
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


def timed(function, *arguments):
    start = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - start


def peak_rss_mb(code: str) -> float:
    """Peak resident memory (MB) of a fresh Python process running `code`, from GNU time.

    Not RUSAGE_CHILDREN: a child forked from this process starts with this process's resident
    pages (the large simulated file), and that high-water mark survives its exec.
    """
    result = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code], check=True,
                            capture_output=True, text=True)
    return int(result.stderr.strip().splitlines()[-1]) / 1024


def measure(n_cells: int, memory_cells: int | None, work: Path) -> dict:
    h5ad = simulated_file(work, n_cells)
    medians_tsv, token_tsv, used_tsv = work / "medians.tsv", work / "tokens.tsv", work / "used.tsv"
    _, fast_medians_s = timed(compute_gene_medians, h5ad, medians_tsv, CHUNK_SIZE)
    plain, plain_medians_s = timed(plain_medians, h5ad)
    fast = pd.read_csv(medians_tsv, sep="\t").set_index("ensembl_id")["median"]
    # the TSV holds 16 significant digits: equal up to that text round trip
    medians_identical = bool(fast.index.equals(plain.index) and np.allclose(fast, plain, rtol=1e-15, atol=0))

    build_reference("corpus", "corpus", medians_tsv, False, token_tsv, used_tsv)
    _, fast_tokens_s = timed(tokenize_dataset, h5ad, token_tsv, used_tsv, work / "tokens.dataset", MODEL_INPUT_SIZE,
                             False, CHUNK_SIZE, [], 1)
    plain_cells, plain_tokens_s = timed(plain_tokenize, h5ad, token_tsv, used_tsv)
    fast_cells = datasets.load_from_disk(str(work / "tokens.dataset"))["input_ids"]
    tokens_identical = fast_cells == plain_cells

    results = {
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        "cells": n_cells, "genes": anndata.read_h5ad(h5ad, backed="r").n_vars,
        "medians": {"workflow_s": fast_medians_s, "per_gene_loop_s": plain_medians_s,
                    "speedup": plain_medians_s / fast_medians_s, "identical": medians_identical},
        "tokenization": {"workflow_cells_per_s": n_cells / fast_tokens_s, "per_cell_loop_cells_per_s": n_cells / plain_tokens_s,
                         "speedup": plain_tokens_s / fast_tokens_s, "identical": tokens_identical},
    }
    if memory_cells:
        large = simulated_file(work, memory_cells)
        results["memory"] = {
            "cells": memory_cells,
            "medians_peak_rss_mb": peak_rss_mb(
                f"from workflow_scripts.medians import compute_gene_medians; "
                f"compute_gene_medians({str(large)!r}, {str(work / 'large_medians.tsv')!r}, {CHUNK_SIZE})"),
            "tokenize_peak_rss_mb": peak_rss_mb(
                f"from workflow_scripts.tokenize import tokenize_dataset; "
                f"tokenize_dataset({str(large)!r}, {str(token_tsv)!r}, {str(used_tsv)!r}, "
                f"{str(work / 'large.dataset')!r}, {MODEL_INPUT_SIZE}, False, {CHUNK_SIZE}, [], 1)"),
        }
    return results


def as_markdown(results: dict) -> str:
    medians, tokens = results["medians"], results["tokenization"]
    lines = [
        f"Machine: {results['machine']}; {results['cells']:,} simulated cells x {results['genes']:,} genes; "
        f"model_input_size {MODEL_INPUT_SIZE}.",
        "",
        "| step | workflow | plain loop | ratio | identical output |",
        "|---|---|---|---|---|",
        f"| gene medians | {medians['workflow_s']:.2f} s | {medians['per_gene_loop_s']:.2f} s (per gene) | "
        f"{medians['speedup']:.1f}x | {medians['identical']} |",
        f"| tokenization | {tokens['workflow_cells_per_s']:,.0f} cells/s | {tokens['per_cell_loop_cells_per_s']:,.0f} "
        f"cells/s (per cell) | {tokens['speedup']:.1f}x | {tokens['identical']} |",
    ]
    if "memory" in results:
        memory = results["memory"]
        lines += ["", f"Peak RSS on {memory['cells']:,} cells: medians {memory['medians_peak_rss_mb']:,.0f} MB, "
                      f"tokenization {memory['tokenize_peak_rss_mb']:,.0f} MB."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--memory-cells", type=int, default=None, help="also measure peak RSS on this many cells")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/latest.md"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = measure(arguments.cells, arguments.memory_cells, Path(work))
    arguments.output.write_text(as_markdown(results))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
