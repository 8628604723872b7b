# The training-size sweep (Geneformer Figs. 11-12): one gene task fine-tuned on fewer and fewer training
# cells. Each size is an experiment of its own, added to the config in rules/common.smk
# (workflow_scripts/sweep/wiring.py); this rule collects them beside the full experiment's baselines.
from workflow_scripts.sweep.wiring import SweepWiring

SWEEP = SweepWiring(config, SIZE_EXPERIMENTS)


rule training_size_table:
    input:
        summaries=SWEEP.files("summary.csv"),
        cells=SWEEP.files("cells.tsv"),
    output:
        csv=report("results/tables/training_size.csv", category="Tables", caption="../report/training_size.rst"),
        markdown="results/tables/training_size.md",
        png=report("results/figures/training_size.png", category="Tables", caption="../report/training_size.rst"),
        pdf="results/figures/training_size.pdf",
    log:
        "logs/training_size_table/all.log",
    benchmark:
        "results/benchmarks/training_size_table/all.tsv"
    conda:
        DATA_ENV
    params:
        runs=SWEEP.labelled,
    shell:
        "python -m workflow_scripts training-size-sweep --runs {params.runs:q} --output-csv {output.csv}"
        " --output-md {output.markdown} --output-dir results/figures > {log} 2>&1"
