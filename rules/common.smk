# Shared helpers: the validated config, and the Workflow (workflow_scripts/core/wiring.py) whose methods
# the rule files use; what only one stage's rules use lives in that stage's wiring.
from workflow_scripts.core.config import method_settings, validate_config
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


# Downstream of fine-tuning (rules/embeddings.smk, rules/perturb.smk).
EMBEDDING = config["embeddings"]
EMBEDDED = EMBEDDING["dataset"] is not None
EMBEDDING_MODELS = ["pretrained", "random_init"] + (["finetuned"] if EMBEDDING["finetuned"] else [])


def embedding_checkpoint(wildcards):
    """The model an embedding is taken from: the fine-tuned fold's, or the pretraining checkpoint."""
    if wildcards.model == "finetuned":
        fold = EMBEDDING["finetuned"]
        return [f"results/{fold['experiment']}/{fold['method']}/fold_{fold['fold']}/model"]
    return WORKFLOW.checkpoint_inputs()


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
        return WORKFLOW.checkpoint_inputs()
    model = PERTURBATION["model"]
    return [f"results/{model['experiment']}/{model['method']}/fold_{model['fold']}/model"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    experiment=alternatives(EXPERIMENTS),
    fold=r"\d+",
