# Simple baselines in the same folds: PCA + random forest, logistic regression on HVGs (cells) or on
# expression statistics (genes); the experiment's task (workflow_scripts/core/tasks.py) gives the fold.
from workflow_scripts.baselines.wiring import BaselineWiring

BASELINE_WIRING = BaselineWiring(config)


rule baseline_fold:
    input:
        h5ad=WORKFLOW.experiment_h5ad,
        folds="results/{experiment}/folds.tsv",
        gene_task=lambda wildcards: (
            [WORKFLOW.experiment_tokens(wildcards), f"results/{wildcards.experiment}/cells.tsv"]
            if WORKFLOW.is_gene_task(wildcards)
            else []
        ),
    output:
        predictions="results/{experiment}/{method}/fold_{fold}/predictions.tsv",
    log:
        "logs/baseline_fold/{experiment}/{method}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/baseline_fold/{experiment}/{method}/fold_{fold}.tsv"
    wildcard_constraints:
        fold=FOLD_RUN,
        method=alternatives(WORKFLOW.methods_of(False)),
    conda:
        DATA_ENV
    threads: config["resources"]["baseline"]["threads"]
    resources:
        **WORKFLOW.job_resources("baseline"),
    params:
        task=lambda wildcards: WORKFLOW.experiment(wildcards)["task"],
        gene_task=lambda wildcards, input: (
            f"--tokenized-dir {input.gene_task[0]} --cells-tsv {input.gene_task[1]}" if input.gene_task else ""
        ),
        settings=BASELINE_WIRING.settings,
        fold=WORKFLOW.run_fold,
        seed=WORKFLOW.run_seed,
    shell:
        "python -m workflow_scripts baseline --task {params.task} --h5ad-path {input.h5ad}"
        " --folds-tsv {input.folds} {params.gene_task} --fold {params.fold} --settings {params.settings:q}"
        " --seed {params.seed} --output-predictions {output.predictions} > {log} 2>&1"
