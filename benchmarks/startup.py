"""Job start-up: seconds from process start to each kind of job's first unit of work, and what it imported.

Every job is a fresh `python -m workflow_scripts COMMAND` process, so what its command's module imports
is paid once per job. Each measurement runs in a fresh process, timed from just before the parent starts
it: for each command, the start-up that `run()` does (process tuning, then importing the command's
module); for a fine-tuning fold, the whole job as the CLI runs it, up to its first optimizer step; and
a bare `import torch` as the yardstick. With `--reference-tree` (a checkout of main) every measurement
is taken for both trees, interleaved round by round, so that ratios compare within the same minutes.
Reported: medians over `--rounds` rounds. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# command -> job kind, for the commands whose module import is timed
JOBS = {
    "tokenize": "tokenize",
    "medians": "gene medians",
    "folds": "folds",
    "check": "preflight check",
    "baseline": "baseline",
    "summarize": "summary",
    "aggregate": "tables",
    "quantization-table": "quantization table",
    "pca-embedding": "PCA embedding",
    "score-embeddings": "embedding scores",
    "perturbation-truth": "perturbation truth",
    "pretrain": "pretraining",
    "finetune": "fine-tune fold",
    "embeddings": "embeddings",
    "perturb": "perturbation",
    "quantize": "quantization",
}
WATCHED = ("torch", "transformers", "torchao", "torch._dynamo", "torch.distributed.tensor")

# Runs in the fresh process: argv = launch time, tree, what to measure, then the command and its arguments.
PROBE = r"""
import json, os, sys, time
launch, tree, measure = float(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path.insert(0, tree)

def report():
    package = sys.modules.get("workflow_scripts")
    print(json.dumps({"seconds": time.time() - launch, "modules": len(sys.modules),
                      "package": getattr(package, "__file__", None),
                      "imported": [name for name in WATCHED if name in sys.modules]}), flush=True)

WATCHED = %r
if measure == "torch":
    import torch
    report()
elif measure == "import":
    from workflow_scripts.core.process_tuning import tune_process
    tune_process()
    from workflow_scripts.cli import resolve
    resolve(sys.argv[4])
    report()
else:  # the whole job, as `python -m workflow_scripts` runs it, until its first optimizer step
    def at_first_step(optimizer, args, kwargs):
        report()
        os._exit(0)

    hooked = []
    def hook_when_torch_optim_loads(event, args):  # audit events come with every import and file opened
        optimizer_module = sys.modules.get("torch.optim.optimizer")
        if not hooked and hasattr(optimizer_module, "register_optimizer_step_post_hook"):
            hooked.append(optimizer_module.register_optimizer_step_post_hook(at_first_step))
    sys.addaudithook(hook_when_torch_optim_loads)
    sys.argv = ["workflow_scripts", *sys.argv[4:]]
    from workflow_scripts.__main__ import run
    run()
    raise SystemExit("the job ended without an optimizer step")
""" % (WATCHED,)


def fold_inputs(directory: Path) -> list[str]:
    """A small labelled dataset tokenized, its folds and a random 6-layer checkpoint (hidden 64, 64
    tokens); returns the finetune command's arguments for fold 1 (batches of 32 cells, one thread)."""
    from workflow_scripts.core.dictionaries import load_token_dictionary
    from workflow_scripts.core.model import geneformer_config, new_masked_lm
    from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
    from workflow_scripts.core.tasks import ExperimentSettings
    from workflow_scripts.finetune.settings import FinetuningSettings
    from workflow_scripts.preflight.folds import make_folds
    from workflow_scripts.reference.medians import build_reference, compute_gene_medians
    from workflow_scripts.reference.settings import ReferenceSettings
    from workflow_scripts.tokenization.tokenizer import tokenize_dataset

    rng = np.random.default_rng(0)
    n_cells, n_genes = 320, 200
    genes = [token for token in load_token_dictionary("geneformer_v1_tokens") if token.startswith("ENSG")][:n_genes]
    labels = np.repeat(["a", "b"], n_cells // 2)
    rates = np.tile(rng.gamma(0.5, 2.0, size=n_genes), (n_cells, 1))
    rates[labels == "b", :20] += 6.0
    counts = sp.csr_matrix(rng.poisson(rates).astype(np.int32))
    obs = pd.DataFrame({"cell_type": labels, "n_counts": np.asarray(counts.sum(axis=1)).ravel()},
                       index=[f"cell_{i:05d}" for i in range(n_cells)])
    h5ad = directory / "cells.h5ad"
    ad.AnnData(X=counts, obs=obs, var=pd.DataFrame({"ensembl_id": genes}, index=genes)).write_h5ad(h5ad)
    tokenizer = TokenizerSettings(model_input_size=64, special_tokens=False, chunk_size=100)
    medians, tokens, used = directory / "medians.tsv", directory / "tokens.tsv", directory / "used.tsv"
    compute_gene_medians(h5ad, medians, tokenizer)
    build_reference(ReferenceSettings(medians="corpus", token_dictionary="corpus"), tokenizer, medians, tokens, used)
    tokenize_dataset(h5ad, tokens, used, directory / "tokenized", tokenizer,
                     ChecksSettings(min_genes_in_vocabulary=50, min_genes_per_class=10), ["cell_type"])
    experiment = ExperimentSettings.from_config(dict(
        dataset="cells", task="cell_classification", label_column="cell_type", gene_labels=None, n_cells=None,
        test_cell_fraction=0.3, min_cells_per_gene=5, group_column=None, split="stratified", n_folds=2, subset={}))
    make_folds(experiment, 0, directory / "folds.tsv", h5ad_path=h5ad)
    shape = dict(num_hidden_layers=6, hidden_size=64, num_attention_heads=4, intermediate_size=128, hidden_act="relu",
                 hidden_dropout_prob=0.02, attention_probs_dropout_prob=0.02, initializer_range=0.02,
                 layer_norm_eps=1e-12)
    vocab_size = len(pd.read_csv(tokens, sep="\t"))
    new_masked_lm(geneformer_config(shape, vocab_size, 64), seed=0).save_pretrained(directory / "checkpoint")
    settings = FinetuningSettings.from_config(dict(
        epochs=1, batch_size=32, eval_batch_size=64, learning_rate=1e-3, lr_scheduler="linear", warmup_steps=2,
        weight_decay=0.001, max_grad_norm=1.0, freeze_layers=0, freeze_embeddings=False, loss="cross_entropy",
        focal_gamma=2.0, focal_alpha=None, upsample=False, upsample_fraction=0.5, head_only_epochs=0,
        init="pretrained", checkpoint_every_steps=0))
    outputs = directory / "fold"  # never written: the job stops at its first step
    return ["finetune", "--task", "cell_classification", "--tokenized-dir", str(directory / "tokenized"),
            "--folds-tsv", str(directory / "folds.tsv"), "--fold", "1", "--checkpoint", str(directory / "checkpoint"),
            "--settings", json.dumps(settings.as_dict()), "--seed", "0", "--threads", "1",
            "--output-predictions", str(outputs / "predictions.tsv"), "--output-log", str(outputs / "log.tsv"),
            "--output-model", str(outputs / "model")]


def measure_once(tree: Path, measure: str, arguments: list[str]) -> dict:
    """One fresh process in `tree`, as a job starts there; its report, checked to come from that tree."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    launch = time.time()
    done = subprocess.run([sys.executable, "-c", PROBE, repr(launch), str(tree), measure, *arguments], cwd=tree,
                          env=environment, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"seconds"')]
    if not lines:
        raise RuntimeError(f"{measure} {arguments[:1]} in {tree} reported nothing:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    if result["package"] is not None and not Path(result["package"]).is_relative_to(tree):
        raise RuntimeError(f"{tree}'s probe imported workflow_scripts from {result['package']}")
    return result


def tree_label(tree: Path) -> str:
    """The tree's commit, and whether it has changes beyond it."""
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return f"{tree.name} @ {commit}{' + changes' if dirty else ''}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def imported(result: dict) -> str:
    return ", ".join(name.replace("torch.distributed.tensor", "DTensor") for name in result["imported"]) or "-"


def write_table(results: dict, trees: dict[str, Path], measures: list[tuple[str, str, list[str]]], rounds: int,
                load: tuple[list[float], list[float]], output: Path) -> None:
    """Medians per measure and tree, each also as a multiple of the bare `import torch` median."""
    torch_seconds = statistics.median(result["seconds"] for result in results[(0, None)])
    names = list(trees)
    lines = [
        f"# Job start-up, {datetime.date.today().isoformat()}",
        "",
        f"`python benchmarks/startup.py`: {cpu_model()}, {os.cpu_count()} cores, medians of {rounds} interleaved "
        f"rounds, each in a fresh process; load average {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end.",
        "Trees: " + "; ".join(f"{name} = {tree_label(tree)}" for name, tree in trees.items()) + ".",
        f"Bare `import torch`: {torch_seconds:.2f} s (the x torch columns divide by it).",
        "",
        "| job | measured | " + " | ".join(f"{name} s | {name} x torch" for name in names)
        + " | modules " + " / ".join(names) + " | imported (" + " / ".join(names) + ") |",
        "|---|---|" + "---:|---:|" * len(names) + "---:|---|",
    ]
    for index, (label, measure, arguments) in enumerate(measures):
        if measure == "torch":
            continue
        per_tree = {name: results[(index, name)] for name in names}
        seconds = {name: statistics.median(result["seconds"] for result in per_tree[name]) for name in names}
        what = "start to first optimizer step" if measure == "job" else f"import for `{arguments[0]}`"
        lines.append(
            f"| {label} | {what} | " + " | ".join(f"{seconds[name]:.2f} | {seconds[name] / torch_seconds:.2f}"
                                                  for name in names)
            + " | " + " / ".join(str(per_tree[name][-1]["modules"]) for name in names)
            + " | " + " / ".join(imported(per_tree[name][-1]) for name in names) + " |")
    output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-tree", type=Path, help="a checkout to measure side by side (e.g. of main)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "startup_latest.md")
    arguments = parser.parse_args()
    trees = {"this": REPO}
    if arguments.reference_tree is not None:
        trees = {"reference": arguments.reference_tree.resolve(), **trees}
    with tempfile.TemporaryDirectory() as scratch:
        job = fold_inputs(Path(scratch))
        measures = [("import torch", "torch", [])]
        measures += [(kind, "import", [command]) for command, kind in JOBS.items()]
        measures += [("fine-tune fold", "job", job)]
        results: dict = {}
        load_at_start = list(os.getloadavg())
        for round_index in range(arguments.rounds):
            order = list(trees.items()) if round_index % 2 == 0 else list(trees.items())[::-1]
            for index, (label, measure, measure_arguments) in enumerate(measures):
                for name, tree in ([(None, REPO)] if measure == "torch" else order):
                    result = measure_once(tree, measure, measure_arguments)
                    results.setdefault((index, name), []).append(result)
                    print(f"round {round_index + 1}: {label} ({measure}, {name or 'bare'}): {result['seconds']:.2f} s",
                          file=sys.stderr)
        write_table(results, trees, measures, arguments.rounds, (load_at_start, list(os.getloadavg())),
                    arguments.output)


if __name__ == "__main__":
    main()
