# Metrics per fold (scored from every method's predictions.tsv), mean ± SD per method, and figures.
import shlex

from workflow_scripts.core.config import embedded_model_caveat


rule summarize_experiment:
    input:
        WORKFLOW.fold_files("predictions.tsv"),
    output:
        summary=report(
            "results/{experiment}/summary.csv",
            category="{experiment}",
            caption="../report/summary.rst",
        ),
        markdown="results/{experiment}/summary.md",
        fold_metrics="results/{experiment}/fold_metrics.csv",
        per_class="results/{experiment}/per_class.csv",
    log:
        "logs/summarize_experiment/{experiment}.log",
    benchmark:
        "results/benchmarks/summarize_experiment/{experiment}.tsv"
    conda:
        DATA_ENV
    params:
        predictions=lambda wildcards, input: WORKFLOW.labelled(input),
        caveat=lambda wildcards: (
            f"--caveat {shlex.quote(caveat)}"
            if (caveat := embedded_model_caveat(config, wildcards.experiment))
            else ""
        ),
    shell:
        "python -m workflow_scripts summarize --experiment {wildcards.experiment} --predictions {params.predictions:q}"
        " {params.caveat} --output-dir results/{wildcards.experiment} > {log} 2>&1"


rule plot_experiment:
    input:  # the folds of the workflow's seed (the tables add those of replicate_seeds)
        WORKFLOW.fold_files("predictions.tsv", replicates=False),
    output:
        roc=report("results/{experiment}/figures/roc.png", category="{experiment}", caption="../report/roc.rst"),
        confusion=report(
            "results/{experiment}/figures/confusion.png",
            category="{experiment}",
            caption="../report/confusion.rst",
        ),
        per_class=report(
            "results/{experiment}/figures/per_class_f1.png",
            category="{experiment}",
            caption="../report/per_class_f1.rst",
        ),
        pdfs=multiext("results/{experiment}/figures/", "roc.pdf", "confusion.pdf", "per_class_f1.pdf"),
    log:
        "logs/plot_experiment/{experiment}.log",
    benchmark:
        "results/benchmarks/plot_experiment/{experiment}.tsv"
    conda:
        DATA_ENV
    params:
        predictions=lambda wildcards, input: WORKFLOW.labelled(input),
    shell:
        "python -m workflow_scripts figures --experiment {wildcards.experiment}"
        " --predictions {params.predictions:q} --output-dir results/{wildcards.experiment}/figures > {log} 2>&1"


rule plot_relative_change:
    input:
        "results/{experiment}/summary.csv",
    output:
        png=report(
            "results/{experiment}/figures/relative_change.png",
            category="{experiment}",
            caption="../report/relative_change.rst",
        ),
        pdf="results/{experiment}/figures/relative_change.pdf",
    log:
        "logs/plot_relative_change/{experiment}.log",
    benchmark:
        "results/benchmarks/plot_relative_change/{experiment}.tsv"
    conda:
        DATA_ENV
    params:
        reference=lambda wildcards: WORKFLOW.experiment(wildcards)["reference_method"],
    shell:
        "python -m workflow_scripts relative-change --experiment {wildcards.experiment} --summary-csv {input}"
        " --reference-method {params.reference} --output-dir results/{wildcards.experiment}/figures > {log} 2>&1"
