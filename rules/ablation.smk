# Pretraining ablation (config `ablation`), not part of `all`: snakemake pretraining_ablation --cores 2.
# Each variant is pretrained by the pretrain rule's job with its own model and pretraining settings, and
# fine-tuned by the finetune_fold rule's job on the first n folds of the downstream experiment.
from workflow_scripts.ablation.wiring import AblationWiring

ABLATION = AblationWiring(config)


use rule pretrain as ablation_pretrain with:
    input:
        tokenized="results/tokenized/corpus.dataset",
        tokens="results/reference/token_dictionary.tsv",
        preflight=lambda wildcards: ABLATION.preflight(),
        gene_sets=lambda wildcards: PRETRAIN.gene_sets_input(ABLATION.settings[wildcards.variant]["pretraining"]),
    output:
        directory("results/ablation/{variant}/pretrained_model"),
    log:
        "logs/ablation_pretrain/{variant}.log",
    benchmark:
        "results/benchmarks/ablation_pretrain/{variant}.tsv"
    wildcard_constraints:
        variant=alternatives(ABLATION.variants),
    threads: config["resources"]["ablation_pretrain"]["threads"]
    resources:
        **WORKFLOW.job_resources("ablation_pretrain"),
    params:
        launcher=WORKFLOW.launcher("ablation_pretrain"),
        model=lambda wildcards: as_json(ABLATION.settings[wildcards.variant]["model"]),
        pretraining=lambda wildcards: as_json(ABLATION.settings[wildcards.variant]["pretraining"]),
        evaluation=as_json(ABLATION.evaluation),


use rule finetune_fold as ablation_finetune_fold with:
    input:
        tokenized=lambda wildcards: f"results/tokenized/{ABLATION.dataset()}.dataset",
        folds=lambda wildcards: f"results/{ABLATION.downstream['experiment']}/folds.tsv",
        checkpoint="results/ablation/{variant}/pretrained_model",
        preflight=lambda wildcards: ABLATION.preflight(),
    output:
        predictions="results/ablation/{variant}/fold_{fold}/predictions.tsv",
        training_log="results/ablation/{variant}/fold_{fold}/training_log.tsv",
        model=directory("results/ablation/{variant}/fold_{fold}/model"),
    log:
        "logs/ablation_finetune_fold/{variant}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/ablation_finetune_fold/{variant}/fold_{fold}.tsv"
    wildcard_constraints:
        variant=alternatives(ABLATION.variants),
    params:
        task="cell_classification",
        cells="",
        settings=lambda wildcards: as_json(ABLATION.finetuning()),
        checkpoint=lambda wildcards, input: input.checkpoint,


rule ablation_summary:
    input:
        expand("results/ablation/{variant}/fold_{fold}/predictions.tsv", variant=ABLATION.variants, fold=ABLATION.folds),
    output:
        summary="results/ablation/summary.csv",
        markdown="results/ablation/summary.md",
        fold_metrics="results/ablation/fold_metrics.csv",
        per_class="results/ablation/per_class.csv",
    log:
        "logs/ablation_summary/all.log",
    benchmark:
        "results/benchmarks/ablation_summary/all.tsv"
    conda:
        DATA_ENV
    params:
        predictions=lambda wildcards, input: WORKFLOW.labelled(input),
    shell:
        "python -m workflow_scripts summarize --experiment pretraining_ablation --predictions {params.predictions:q}"
        " --output-dir results/ablation > {log} 2>&1"


rule pretraining_ablation:
    input:
        models=expand("results/ablation/{variant}/pretrained_model", variant=ABLATION.variants),
        summary="results/ablation/summary.csv",
    output:
        csv=report(
            "results/tables/pretraining_ablation.csv",
            category="Pretraining ablation",
            caption="../report/ablation.rst",
        ),
        png=report(
            "results/figures/pretraining_ablation.png",
            category="Pretraining ablation",
            caption="../report/ablation.rst",
        ),
    log:
        "logs/pretraining_ablation/all.log",
    benchmark:
        "results/benchmarks/pretraining_ablation/all.tsv"
    conda:
        DATA_ENV
    params:
        variants=lambda wildcards, input: as_json([list(pair) for pair in zip(ABLATION.variants, input.models)]),
        downstream=lambda wildcards: ABLATION.dataset(),
    shell:
        "python -m workflow_scripts ablation-table --variants {params.variants:q} --summary-csv {input.summary}"
        " --downstream {params.downstream} --output-csv {output.csv} --output-png {output.png} > {log} 2>&1"
