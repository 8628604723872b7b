# One job per experiment x fine-tuning method x fold (x replicate seed: fold_K_seed_S), tagged with GPU
# count, memory and runtime.
# The experiment's task (workflow_scripts/core/tasks.py) decides the fold's data and the model head: cell
# tasks train a sequence classifier; gene tasks a token classifier (with the cell roles of cells.tsv).
# Training checkpoints go to the fold's model.resume/ (removed on success): a killed job resumes when rerun.


rule finetune_fold:
    input:
        tokenized=WORKFLOW.experiment_tokens,
        folds="results/{experiment}/folds.tsv",
        cells=lambda wildcards: f"results/{wildcards.experiment}/cells.tsv" if WORKFLOW.is_gene_task(wildcards) else [],
        checkpoint=WORKFLOW.checkpoint_inputs(),
    output:
        predictions="results/{experiment}/{method}/fold_{fold}/predictions.tsv",
        training_log="results/{experiment}/{method}/fold_{fold}/training_log.tsv",
        model=directory("results/{experiment}/{method}/fold_{fold}/model"),
    log:
        "logs/finetune_fold/{experiment}/{method}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/finetune_fold/{experiment}/{method}/fold_{fold}.tsv"
    wildcard_constraints:
        fold=FOLD_RUN,
        method=alternatives(WORKFLOW.methods_of(True)),
    conda:
        TORCH_ENV
    threads: config["resources"]["finetune"]["threads"]
    resources:
        **WORKFLOW.job_resources("finetune"),
    params:
        task=lambda wildcards: WORKFLOW.experiment(wildcards)["task"],
        cells=lambda wildcards, input: f"--cells-tsv {input.cells}" if input.cells else "",
        settings=lambda wildcards: as_json(
            method_settings(config, wildcards.experiment, wildcards.method)["finetuning"]
        ),
        checkpoint=WORKFLOW.checkpoint_of,
        fold=WORKFLOW.run_fold,
        seed=WORKFLOW.run_seed,
        launcher=WORKFLOW.launcher("finetune"),
    shell:
        "{params.launcher} finetune --task {params.task} --tokenized-dir {input.tokenized}"
        " --folds-tsv {input.folds} {params.cells} --fold {params.fold} --checkpoint {params.checkpoint}"
        " --settings {params.settings:q} --seed {params.seed} --threads {threads}"
        " --output-predictions {output.predictions} --output-log {output.training_log}"
        " --output-model {output.model} > {log} 2>&1"
