"""What every stage's rules read from the validated config: experiments and their files, the model
every job starts from, job resources and launchers.

rules/common.smk builds one `Workflow` from the config; a rule names `WORKFLOW.experiment_h5ad` and
the like, and a stage's own wiring (workflow_scripts/<stage>/wiring.py) holds what only its rules use.
Methods that take `wildcards` (and `input`) are Snakemake input and params functions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .dictionaries import PICKLE_SUFFIXES
from .truths import GENE_LABEL_SETS, simulated_label_set

FINETUNE_KINDS = {"finetune"}
PRETRAINED_MODEL = "results/pretrained_model"
DOWNLOADED_CHECKPOINT = "results/downloads/checkpoint"
SIMULATED_GENE_LABELS = "results/data/gene_labels/{label_set}.tsv"  # a simulated label set's gene label file
SIMULATED_GENE_SETS = "results/data/gene_sets.gmt"  # the simulator's gene programs, as a GMT file
SIMULATED = "simulated"
FOLD_RUN = r"\d+(_seed_\d+)?"  # a training run's directory, fold_{run}: a fold, with a replicate seed or not
_FOLD_RUN = re.compile(r"^(?P<fold>\d+)(?:_seed_(?P<seed>\d+))?$")


def as_json(value: Any) -> str:
    """A config section as one JSON string, for the CLI's --arg value form (quote with :q)."""
    return json.dumps(value, sort_keys=True)


def alternatives(names: list[str]) -> str:
    """A wildcard constraint matching exactly these names."""
    return "|".join(names) if names else "(?!)"


def memory_by_attempt(mem_mb: int):
    """Snakemake calls this with the job's attempt (1 first, then 2, 3 on retries)."""
    return lambda wildcards, attempt: mem_mb * attempt


class Workflow:
    """The validated config as the rules read it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.experiments = list(config["experiments"])
        self.gene_experiments = [name for name, entry in config["experiments"].items()
                                 if entry["task"] == "gene_classification"]
        self.cell_experiments = [name for name in self.experiments if name not in self.gene_experiments]

    # --- experiments ------------------------------------------------------------------------------

    def experiment(self, wildcards) -> dict[str, Any]:
        return self.config["experiments"][wildcards.experiment]

    def experiment_h5ad(self, wildcards) -> str:
        return f"results/data/{self.experiment(wildcards)['dataset']}.h5ad"

    def dataset_origin(self, wildcards) -> str:
        """What the user wrote for the experiment's dataset (its file and config key), for messages:
        results/data/X.h5ad is the workflow's own copy of it. '' for a simulated dataset."""
        name = self.experiment(wildcards)["dataset"]
        dataset = self.config["datasets"][name]
        if dataset["source"] == "h5ad":
            return f"{dataset['path']} (datasets.{name}.path)"
        return f"the files of datasets.{name}.files" if dataset["source"] == "download" else ""

    def experiment_tokens(self, wildcards) -> str:
        return f"results/tokenized/{self.experiment(wildcards)['dataset']}.dataset"

    def is_gene_task(self, wildcards) -> bool:
        return wildcards.experiment in self.gene_experiments

    def methods_of(self, finetuned: bool) -> list[str]:
        """Method names (across experiments) whose kind is / is not fine-tuning."""
        return sorted({method for name in self.experiments
                       for method, entry in self.config["experiments"][name]["methods"].items()
                       if (entry["kind"] in FINETUNE_KINDS) == finetuned})

    def fold_runs(self, n_folds: int, replicates: bool = True) -> list[str]:
        """The training runs of a method, as in fold_{run}: each fold with the workflow's seed, then
        (`replicates`) each fold again with each of `replicate_seeds`."""
        seeds = self.config["replicate_seeds"] if replicates else []
        return [str(fold) for fold in range(n_folds)] + [f"{fold}_seed_{seed}" for seed in seeds
                                                         for fold in range(n_folds)]

    def fold_files(self, name: str, replicates: bool = True):
        """An input function: every method's and training run's `name` file of the wildcards' experiment."""

        def files(wildcards) -> list[str]:
            entry = self.experiment(wildcards)
            return [f"results/{wildcards.experiment}/{method}/fold_{run}/{name}"
                    for method in entry["methods"] for run in self.fold_runs(entry["n_folds"], replicates)]

        return files

    def fold_and_seed(self, run: str) -> tuple[int, int]:
        """A training run's fold and seed (3_seed_7: fold 3, seed 7; 3: fold 3, the workflow's seed)."""
        match = _FOLD_RUN.match(run)
        return int(match["fold"]), self.config["seed"] if match["seed"] is None else int(match["seed"])

    def run_fold(self, wildcards) -> int:
        return self.fold_and_seed(wildcards.fold)[0]

    def run_seed(self, wildcards) -> int:
        return self.fold_and_seed(wildcards.fold)[1]

    def labelled(self, paths: list[str]) -> str:
        """JSON list of [method, fold, seed, path] of fold files, for summarize / figures."""
        return as_json([[Path(path).parts[-3], *self.fold_and_seed(Path(path).parts[-2].removeprefix("fold_")), path]
                        for path in paths])

    def gene_label_source(self, name: str) -> str:
        """A gene task's label file as given: a downloaded file's place, or the user's path."""
        labels = self.config["experiments"][name]["gene_labels"]
        return f"results/downloads/gene_labels/{labels['filename']}" if isinstance(labels, dict) else labels

    def gene_labels(self, wildcards) -> str:
        """A gene task's label TSV: a simulated label set's, the user's (or a downloaded) TSV, or the
        TSV converted from a gene class pickle."""
        label_set = simulated_label_set(self.experiment(wildcards)["gene_labels"])
        if label_set is not None:
            return SIMULATED_GENE_LABELS.format(label_set=label_set)
        source = self.gene_label_source(wildcards.experiment)
        return f"results/gene_labels/{wildcards.experiment}.tsv" if source.endswith(PICKLE_SUFFIXES) else source

    @staticmethod
    def label_set_truth(wildcards) -> list[str]:
        """The truth file a simulated label set is read from: its dataset's (none for the world's)."""
        dataset = GENE_LABEL_SETS[wildcards.label_set].dataset
        return [] if dataset is None else [f"results/data/{dataset}.truth.json"]

    def obs_columns(self, wildcards) -> str:
        """Label and group columns of every experiment, embedding and perturbation that uses the
        wildcards' dataset, copied into its tokens (JSON list)."""
        config = self.config
        columns = set()
        for entry in config["experiments"].values():
            if entry["dataset"] == wildcards.dataset:
                columns.update(column for column in (entry["label_column"], entry["group_column"]) if column)
        perturbation = config["perturbation"]
        if (
            perturbation["model"]
            and config["experiments"][perturbation["model"]["experiment"]]["dataset"] == wildcards.dataset
        ):
            columns.add(perturbation["state_column"])
        embeddings = config["embeddings"]
        if embeddings["dataset"] == wildcards.dataset:
            columns.update(column for column in (embeddings["label_column"], embeddings["batch_column"]) if column)
        return as_json(sorted(columns))

    # --- the model every fine-tuning starts from ----------------------------------------------------

    def checkpoint_dir(self) -> str:
        """Downloaded, the user's, or the one pretrained here."""
        if self.config["model"]["download"]:
            return DOWNLOADED_CHECKPOINT
        return self.config["model"]["checkpoint"] or PRETRAINED_MODEL

    def checkpoint_inputs(self) -> list[str]:
        """What jobs using the checkpoint wait for: its downloaded files, or its directory."""
        files = self.config["model"]["download"].values()
        return [f"{DOWNLOADED_CHECKPOINT}/{file['filename']}" for file in files] if files else [self.checkpoint_dir()]

    def checkpoint_of(self, wildcards, input) -> str:
        """The checkpoint directory, from the job's input (a downloaded file's folder, or the directory)."""
        return str(Path(input.checkpoint[0]).parent) if self.config["model"]["download"] else input.checkpoint[0]

    # --- jobs -------------------------------------------------------------------------------------

    def job_resources(self, family: str) -> dict[str, Any]:
        """A job family's resources from config, as the SLURM executor plugin reads them: mem_mb, runtime,
        and gpu (with gpu_model and cpus_per_gpu when set) only for jobs that use GPUs. mem_mb is the
        first attempt's: a job retried (the profile's `retries`) asks for mem_mb x attempt."""
        settings = self.config["resources"][family]
        names = ("runtime", "gpu", "gpu_model", "cpus_per_gpu") if settings["gpu"] else ("runtime",)
        resources = {name: settings[name] for name in names if settings[name] is not None}
        return {"mem_mb": memory_by_attempt(settings["mem_mb"]), **resources}

    def launcher(self, family: str) -> str:
        """How a model job starts: plainly on the CPU; on GPUs through workflow_scripts.core.devices, which
        claims the job's own devices (Snakemake never sets CUDA_VISIBLE_DEVICES) and starts one process
        per GPU under torchrun when the job asks for more than one."""
        gpus = self.config["resources"][family]["gpu"]
        return f"python -m workflow_scripts.core.devices --gpus {gpus} --" if gpus else "python -m workflow_scripts"
