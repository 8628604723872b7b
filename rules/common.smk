# Shared helpers: the validated config and the names the other rule files use.
import json
from pathlib import Path

from workflow_scripts.config import method_settings, validate_config

validate_config(config, source="config")  # fills schema defaults in place; stops on a bad config

EXPERIMENTS = list(config["experiments"])
GENE_EXPERIMENTS = [name for name, entry in config["experiments"].items() if entry["task"] == "gene_classification"]
CELL_EXPERIMENTS = [name for name in EXPERIMENTS if name not in GENE_EXPERIMENTS]
SIMULATED_GENE_LABELS = "results/data/dosage_gene_labels.tsv"
FINETUNE_KINDS = {"finetune"}
PRETRAINED_MODEL = "results/pretrained_model"
CONDA_ENV = "../envs/workflow.yaml"  # used with --sdm conda; relative to rules/


def as_json(value):
    """A config section as one JSON string, for the CLI's --arg value form (quote with :q)."""
    return json.dumps(value, sort_keys=True)


def experiment(wildcards):
    return config["experiments"][wildcards.experiment]


def experiment_h5ad(wildcards):
    return f"results/data/{experiment(wildcards)['dataset']}.h5ad"


def is_gene_task(wildcards):
    return wildcards.experiment in GENE_EXPERIMENTS


def experiment_tokens(wildcards):
    return f"results/tokenized/{experiment(wildcards)['dataset']}.dataset"


def gene_labels(wildcards):
    """A gene task's label file: the simulator's planted dosage genes, or the user's TSV."""
    labels = experiment(wildcards)["gene_labels"]
    return SIMULATED_GENE_LABELS if labels == "simulated" else labels


def methods_of(kinds_wanted, experiment_names=EXPERIMENTS):
    """Method names (across experiments) whose kind is / is not fine-tuning."""
    names = set()
    for name in experiment_names:
        for method, entry in config["experiments"][name]["methods"].items():
            if (entry["kind"] in FINETUNE_KINDS) == kinds_wanted:
                names.add(method)
    return sorted(names)


def folds_of(wildcards):
    return range(experiment(wildcards)["n_folds"])


def checkpoint_dir():
    """The model every fine-tuning starts from: the user's checkpoint, or the one pretrained here."""
    return config["model"]["checkpoint"] or PRETRAINED_MODEL


def alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(names) if names else "(?!)"


def obs_columns(wildcards):
    """Label and group columns of every experiment that uses this dataset, copied into the tokens."""
    columns = set()
    for entry in config["experiments"].values():
        if entry["dataset"] == wildcards.dataset:
            columns.update(column for column in (entry["label_column"], entry["group_column"]) if column)
    return as_json(sorted(columns))


def fold_files(name):
    """(method, fold, path) triples of an experiment, as 'method:fold:path' CLI items."""

    def files(wildcards):
        entry = experiment(wildcards)
        return [
            f"results/{wildcards.experiment}/{method}/fold_{fold}/{name}"
            for method in entry["methods"]
            for fold in range(entry["n_folds"])
        ]

    return files


def labelled(paths):
    """JSON list of [method, fold, path] for summarize / figures."""
    return as_json([[Path(p).parts[-3], int(Path(p).parts[-2].removeprefix("fold_")), p] for p in paths])


# Real data (rules/prepare.smk): datasets prepared from a user's h5ad or from downloads.
PREPARED = [name for name, entry in config["datasets"].items() if entry["source"] != "simulated"]
DOWNLOADED = [name for name, entry in config["datasets"].items() if entry["source"] == "download"]
CHECKSUM_RECORD = "results/downloads/checksums.tsv"  # trust-on-first-use checksums of unpinned files


def downloaded_file(wildcards):
    """The config entry (url, filename, sha256, size) of one file of a downloaded dataset."""
    files = config["datasets"][wildcards.dataset]["files"].values()
    return next(entry for entry in files if entry["filename"] == wildcards.filename)


def source_files(wildcards):
    """File key -> path of the files a dataset is prepared from (the user's h5ad, or the downloads)."""
    entry = config["datasets"][wildcards.dataset]
    if entry["source"] == "h5ad":
        return {"h5ad": entry["path"]}
    return {key: f"results/downloads/{wildcards.dataset}/{file['filename']}" for key, file in entry["files"].items()}


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    experiment=alternatives(EXPERIMENTS),
    fold=r"\d+",
