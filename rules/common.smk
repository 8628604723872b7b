# Shared helpers: the validated config, and the Workflow (workflow_scripts/core/wiring.py) whose methods
# the rule files use; what only one stage's rules use lives in that stage's wiring.
import functools

from workflow_scripts.ablation.variants import downstream_finetuning, evaluation_masking, variant_settings
from workflow_scripts.core.config import method_settings, validate_config
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.wiring import (
    PRETRAINED_MODEL,
    SIMULATED_GENE_LABELS,
    Workflow,
    alternatives,
    as_json,
)

validate_config(config, source="config")  # fills schema defaults in place; stops on a bad config

WORKFLOW = Workflow(config)
EXPERIMENTS = WORKFLOW.experiments
GENE_EXPERIMENTS = WORKFLOW.gene_experiments
CELL_EXPERIMENTS = WORKFLOW.cell_experiments
# conda environments for --sdm conda (relative to rules/): data and tables, or torch for model jobs
DATA_ENV = "../envs/data.yaml"
TORCH_ENV = "../envs/torch.yaml"


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
