"""Geneformer fine-tuning experiments: raw counts -> medians -> tokens -> pretraining -> per-fold
fine-tuning and baselines -> evaluation -> quantization,
embeddings and in silico perturbation -> mean ± SD tables and figures -> docs/results.md, which
shows every table and figure of the run (the last job of `all`). The logic lives in
workflow_scripts/; this file and rules/ only wire it (see docs/architecture.md)."""

from snakemake.utils import min_version

from workflow_scripts.core.job_messages import show_job_messages

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/prepare.smk"
include: "rules/reference.smk"
include: "rules/tokenization.smk"
include: "rules/preflight.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/baselines.smk"
include: "rules/evaluate.smk"
include: "rules/quantize.smk"
include: "rules/embeddings.smk"
include: "rules/perturb.smk"
include: "rules/sweep.smk"
include: "rules/aggregate.smk"
include: "rules/ablation.smk"


rule all:
    default_target: True
    input:
        expand("results/{experiment}/summary.csv", experiment=EXPERIMENTS),
        expand("results/{experiment}/figures/roc.png", experiment=EXPERIMENTS),
        [
            f"results/{name}/figures/relative_change.png"
            for name, entry in config["experiments"].items()
            if entry["reference_method"]
        ],
        "results/tables/all_experiments.csv",
        "results/tables/reported_vs_reproduced.csv",
        ["results/tables/quantization.csv"] if QUANTIZED else [],
        ["results/tables/embedding_scores.csv"] if EMBEDDED else [],
        PERTURBATION_FIGURES if PERTURBED else [],
        ["results/tables/perturbation_truth.csv"] if PLANTED_TRUTH else [],
        ["results/tables/training_size.csv"] if SWEEP.enabled else [],
        "docs/results.md",


# What jobs said (a failed job's message and fix, this run's warnings), on the terminal, not only in logs/.
onsuccess:
    show_job_messages(log)


onerror:
    show_job_messages(log)
