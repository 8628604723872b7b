# Shared helpers: the validated config, and the Workflow (workflow_scripts/core/wiring.py) whose methods
# the rule files use; what only one stage's rules use lives in that stage's wiring.
from workflow_scripts.core.config import method_settings, validate_config
from workflow_scripts.core.truths import GENE_LABEL_SETS
from workflow_scripts.sweep.wiring import add_size_experiments
from workflow_scripts.core.wiring import (
    FOLD_RUN,
    PRETRAINED_MODEL,
    SIMULATED_GENE_LABELS,
    SIMULATED_GENE_SETS,
    Workflow,
    alternatives,
    as_json,
)

validate_config(config, source="config")  # fills schema defaults in place; stops on a bad config
SIZE_EXPERIMENTS = add_size_experiments(config)  # the training-size sweep's experiments (rules/sweep.smk)

WORKFLOW = Workflow(config)
EXPERIMENTS = WORKFLOW.experiments
GENE_EXPERIMENTS = WORKFLOW.gene_experiments
CELL_EXPERIMENTS = WORKFLOW.cell_experiments
# conda environments for --sdm conda (relative to rules/): data and tables, or torch for model jobs
DATA_ENV = "../envs/data.yaml"
TORCH_ENV = "../envs/torch.yaml"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    experiment=alternatives(EXPERIMENTS),
    fold=r"\d+",
