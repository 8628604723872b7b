# Shared helpers: the validated config and the names the other rule files use.
import functools
import json
from pathlib import Path

from workflow_scripts.ablation.variants import downstream_finetuning, evaluation_masking, variant_settings
from workflow_scripts.core.config import method_settings, validate_config
from workflow_scripts.core.errors import InputError

validate_config(config, source="config")  # fills schema defaults in place; stops on a bad config

EXPERIMENTS = list(config["experiments"])
GENE_EXPERIMENTS = [name for name, entry in config["experiments"].items() if entry["task"] == "gene_classification"]
CELL_EXPERIMENTS = [name for name in EXPERIMENTS if name not in GENE_EXPERIMENTS]
SIMULATED_GENE_LABELS = "results/data/dosage_gene_labels.tsv"
PICKLE_SUFFIXES = (".pickle", ".pkl")
FINETUNE_KINDS = {"finetune"}
PRETRAINED_MODEL = "results/pretrained_model"
DOWNLOADED_CHECKPOINT = "results/downloads/checkpoint"
# conda environments for --sdm conda (relative to rules/): data and tables, or torch for model jobs
DATA_ENV = "../envs/data.yaml"
TORCH_ENV = "../envs/torch.yaml"


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


def gene_label_source(name):
    """The gene label file as given: a downloaded file's place, or the user's path."""
    labels = config["experiments"][name]["gene_labels"]
    return f"results/downloads/gene_labels/{labels['filename']}" if isinstance(labels, dict) else labels


def gene_labels(wildcards):
    """A gene task's label TSV: the simulator's planted dosage genes, the user's (or a downloaded) TSV,
    or the TSV converted from a gene class pickle."""
    if experiment(wildcards)["gene_labels"] == "simulated":
        return SIMULATED_GENE_LABELS
    source = gene_label_source(wildcards.experiment)
    return f"results/gene_labels/{wildcards.experiment}.tsv" if source.endswith(PICKLE_SUFFIXES) else source


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
    """The model every fine-tuning starts from: downloaded, the user's, or the one pretrained here."""
    if config["model"]["download"]:
        return DOWNLOADED_CHECKPOINT
    return config["model"]["checkpoint"] or PRETRAINED_MODEL


def checkpoint_inputs():
    """What jobs using the checkpoint wait for: its downloaded files, or its directory."""
    files = config["model"]["download"].values()
    return [f"{DOWNLOADED_CHECKPOINT}/{file['filename']}" for file in files] if files else [checkpoint_dir()]


def checkpoint_of(wildcards, input):
    """The checkpoint directory, from the job's input (a downloaded file's folder, or the directory)."""
    return str(Path(input.checkpoint[0]).parent) if config["model"]["download"] else input.checkpoint[0]


def job_resources(family):
    """A job family's resources from config, as the SLURM executor plugin reads them: mem_mb, runtime,
    and gpu (with gpu_model and cpus_per_gpu when set) only for jobs that use GPUs. mem_mb is the
    first attempt's: a job retried (the profile's `retries`) asks for mem_mb x attempt."""
    settings = config["resources"][family]
    names = ("runtime", "gpu", "gpu_model", "cpus_per_gpu") if settings["gpu"] else ("runtime",)
    resources = {name: settings[name] for name in names if settings[name] is not None}
    return {"mem_mb": memory_by_attempt(settings["mem_mb"]), **resources}


def memory_by_attempt(mem_mb):
    """Snakemake calls this with the job's attempt (1 first, then 2, 3 on retries)."""
    return lambda wildcards, attempt: mem_mb * attempt


def launcher(family):
    """How a model job starts: plainly on the CPU; on GPUs through workflow_scripts.core.devices, which
    claims the job's own devices (Snakemake never sets CUDA_VISIBLE_DEVICES) and starts one process
    per GPU under torchrun when the job asks for more than one."""
    gpus = config["resources"][family]["gpu"]
    return f"python -m workflow_scripts.core.devices --gpus {gpus} --" if gpus else "python -m workflow_scripts"


def alternatives(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(names) if names else "(?!)"


def obs_columns(wildcards):
    """Label and group columns of every experiment that uses this dataset, copied into the tokens."""
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
CHECKSUM_RECORD = "results/downloads/checksums.tsv"  # trust-on-first-use checksums of unpinned files
# results/downloads/{source}/{filename}: source = a downloaded dataset, the checkpoint or gene labels
DOWNLOADS = {
    name: {file["filename"]: file for file in entry["files"].values()}
    for name, entry in config["datasets"].items()
    if entry["source"] == "download"
}
DOWNLOADS["checkpoint"] = {file["filename"]: file for file in config["model"]["download"].values()}
DOWNLOADS["gene_labels"] = {
    entry["gene_labels"]["filename"]: entry["gene_labels"]
    for entry in config["experiments"].values()
    if isinstance(entry["gene_labels"], dict)
}


def downloaded_file(wildcards):
    """The config entry (url, filename, sha256, size) of one file to download."""
    return DOWNLOADS[wildcards.source][wildcards.filename]


def source_files(wildcards):
    """File key -> path of the files a dataset is prepared from (the user's h5ad, or the downloads)."""
    entry = config["datasets"][wildcards.dataset]
    if entry["source"] == "h5ad":
        return {"h5ad": entry["path"]}
    return {key: f"results/downloads/{wildcards.dataset}/{file['filename']}" for key, file in entry["files"].items()}


# Downstream of fine-tuning (rules/embeddings.smk, rules/perturb.smk).
EMBEDDING = config["embeddings"]
EMBEDDED = EMBEDDING["dataset"] is not None
EMBEDDING_MODELS = ["pretrained", "random_init"] + (["finetuned"] if EMBEDDING["finetuned"] else [])


def embedding_checkpoint(wildcards):
    """The model an embedding is taken from: the fine-tuned fold's, or the pretraining checkpoint."""
    if wildcards.model == "finetuned":
        fold = EMBEDDING["finetuned"]
        return [f"results/{fold['experiment']}/{fold['method']}/fold_{fold['fold']}/model"]
    return checkpoint_inputs()


PERTURBATION = config["perturbation"]
PERTURBED = bool(PERTURBATION["model"])
PERTURBATION_ANALYSES = list(PERTURBATION["analyses"]) if PERTURBED else []
PERTURBATION_DATASET = config["experiments"][PERTURBATION["model"]["experiment"]]["dataset"] if PERTURBED else None
PLANTED_TRUTH = (
    f"results/data/{PERTURBATION_DATASET}.truth.json"
    if PERTURBED and config["datasets"][PERTURBATION_DATASET]["source"] == "simulated"
    else None
)
PERTURBATION_FIGURES = [
    f"results/figures/perturbation_{name}.png"
    for name in ("shifts", "top_genes", "combinations", *(["targets"] if PLANTED_TRUTH else []))
]


def perturbed_model(wildcards):
    """The model an analysis perturbs: the fine-tuned fold's model directory, or the pretraining checkpoint."""
    if PERTURBATION["analyses"][wildcards.analysis]["model"] == "pretrained":
        return checkpoint_inputs()
    model = PERTURBATION["model"]
    return [f"results/{model['experiment']}/{model['method']}/fold_{model['fold']}/model"]


# Pretraining: pathway masking's gene sets (rules/pretrain.smk) and the ablation's variants (rules/ablation.smk).
SIMULATED_GENE_SETS = "results/data/gene_sets.gmt"
ABLATION = config["ablation"]
ABLATION_VARIANTS = list(ABLATION["variants"])
ABLATION_SETTINGS = {name: variant_settings(config, name) for name in ABLATION_VARIANTS}  # each variant checked
ABLATION_FOLDS = range(ABLATION["downstream"]["n_folds"])
ABLATION_EVALUATION = evaluation_masking(config)  # every variant's held-out loss masks the same cells alike


def gene_sets_input(pretraining):
    """The gene set file pathway masking reads ([] for other strategies): the user's GMT, or the
    simulator's gene programs, which only describe a simulated corpus."""
    masking = pretraining["masking"]
    if masking["strategy"] != "pathway":
        return []
    if masking["gene_sets"] != "simulated":
        return [masking["gene_sets"]]
    if config["datasets"].get("corpus", {}).get("source") != "simulated":
        raise InputError(
            "config: pretraining.masking.gene_sets",
            "simulated gene programs describe only a simulated corpus",
            "give a GMT file of gene sets (Ensembl IDs or symbols)",
        )
    return [SIMULATED_GENE_SETS]


@functools.cache
def ablation_finetuning():
    """The ablation's downstream recipe, checked once, when the first ablation job is planned (a
    configuration without the downstream experiment is fine while no ablation job is asked for)."""
    return downstream_finetuning(config, ABLATION_SETTINGS)


def ablation_dataset():
    ablation_finetuning()
    return config["experiments"][ABLATION["downstream"]["experiment"]]["dataset"]


def ablation_preflight():
    ablation_finetuning()
    return f"results/preflight/{ABLATION['downstream']['experiment']}.json"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    experiment=alternatives(EXPERIMENTS),
    fold=r"\d+",
