# Checks on every experiment's input, and its cross-validation folds (one `folds` command; the
# experiment's task, workflow_scripts/core/tasks.py, decides how). An experiment's folds, and so its
# fine-tuning, wait for its own report; the checks run before any other job that is ready (priority),
# so bad input stops the run while the corpus is still being tokenized, before pretraining starts.
PREFLIGHT_PRIORITY = 100


import shlex

from workflow_scripts.core.tasks import ExperimentSettings


rule check_experiment:
    input:
        h5ad=WORKFLOW.experiment_h5ad,
        tokens="results/reference/token_dictionary.tsv",
        medians="results/reference/medians_used.tsv",
        gene_labels=lambda wildcards: WORKFLOW.gene_labels(wildcards) if WORKFLOW.is_gene_task(wildcards) else [],
        checkpoint=WORKFLOW.checkpoint_inputs() if WORKFLOW.checkpoint_dir() != PRETRAINED_MODEL else [],
    output:
        "results/preflight/{experiment}.json",
    log:
        "logs/check_experiment/{experiment}.log",
    benchmark:
        "results/benchmarks/check_experiment/{experiment}.tsv"
    priority: PREFLIGHT_PRIORITY
    conda:
        TORCH_ENV
    params:
        experiment=lambda wildcards: as_json(WORKFLOW.experiment(wildcards)),
        tokenizer=as_json(config["tokenizer"]),
        checks=as_json(config["checks"]),
        checkpoint=lambda wildcards, input: (
            f"--checkpoint {WORKFLOW.checkpoint_of(wildcards, input)}" if input.checkpoint else ""
        ),
        gene_labels=lambda wildcards, input: f"--gene-labels-tsv {input.gene_labels}" if input.gene_labels else "",
        origin=lambda wildcards: (
            f"--dataset-origin {shlex.quote(WORKFLOW.dataset_origin(wildcards))}"
            if WORKFLOW.dataset_origin(wildcards)
            else ""
        ),
    shell:
        "python -m workflow_scripts check --experiment-name {wildcards.experiment} {params.origin}"
        " --experiment {params.experiment:q} --h5ad-path {input.h5ad} --token-dictionary-tsv {input.tokens}"
        " --medians-tsv {input.medians} --tokenizer {params.tokenizer:q} --checks {params.checks:q}"
        " {params.checkpoint} {params.gene_labels} --output-json {output} > {log} 2>&1"


rule make_folds:
    input:
        h5ad=WORKFLOW.experiment_h5ad,
        preflight="results/preflight/{experiment}.json",
    output:
        "results/{experiment}/folds.tsv",
    log:
        "logs/make_folds/{experiment}.log",
    benchmark:
        "results/benchmarks/make_folds/{experiment}.tsv"
    wildcard_constraints:
        experiment=alternatives(CELL_EXPERIMENTS),
    conda:
        DATA_ENV
    params:
        experiment=lambda wildcards: as_json(ExperimentSettings.section_of(WORKFLOW.experiment(wildcards))),
        seed=config["seed"],
    shell:
        "python -m workflow_scripts folds --experiment {params.experiment:q} --seed {params.seed}"
        " --h5ad-path {input.h5ad} --output-folds-tsv {output} > {log} 2>&1"


rule make_gene_folds:
    input:
        gene_labels=WORKFLOW.gene_labels,
        tokenized=WORKFLOW.experiment_tokens,
        tokens="results/reference/token_dictionary.tsv",
        preflight="results/preflight/{experiment}.json",
    output:
        folds="results/{experiment}/folds.tsv",
        cells="results/{experiment}/cells.tsv",
    log:
        "logs/make_gene_folds/{experiment}.log",
    benchmark:
        "results/benchmarks/make_gene_folds/{experiment}.tsv"
    wildcard_constraints:
        experiment=alternatives(GENE_EXPERIMENTS),
    conda:
        DATA_ENV
    params:
        experiment=lambda wildcards: as_json(ExperimentSettings.section_of(WORKFLOW.experiment(wildcards))),
        min_genes=config["checks"]["min_genes_per_class"],
        seed=config["seed"],
    shell:
        "python -m workflow_scripts folds --experiment {params.experiment:q} --seed {params.seed}"
        " --gene-labels-tsv {input.gene_labels} --tokenized-dir {input.tokenized} --token-dictionary-tsv {input.tokens}"
        " --min-genes-per-class {params.min_genes} --output-folds-tsv {output.folds}"
        " --output-cells-tsv {output.cells} > {log} 2>&1"
