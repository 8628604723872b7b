# Cross-experiment tables: all experiments side by side, and the reported-vs-reproduced table.


rule all_experiments_table:
    input:
        expand("results/{experiment}/summary.csv", experiment=EXPERIMENTS),
    output:
        csv=report("results/tables/all_experiments.csv", category="Tables", caption="../report/all_experiments.rst"),
        markdown="results/tables/all_experiments.md",
    log:
        "logs/all_experiments_table/all.log",
    benchmark:
        "results/benchmarks/all_experiments_table/all.tsv"
    conda:
        DATA_ENV
    params:
        summaries=lambda wildcards, input: as_json(
            [[name, config["experiments"][name]["task"], path] for name, path in zip(EXPERIMENTS, input)]
        ),
    shell:
        "python -m workflow_scripts aggregate --summaries {params.summaries:q} --output-csv {output.csv}"
        " --output-md {output.markdown} > {log} 2>&1"


rule reported_vs_reproduced:
    input:
        reported="config/reported.yaml",
        summaries=expand("results/{experiment}/summary.csv", experiment=EXPERIMENTS),
        per_class=expand("results/{experiment}/per_class.csv", experiment=EXPERIMENTS),
        quantization=["results/tables/quantization.csv"] if QUANTIZED else [],
    output:
        csv=report(
            "results/tables/reported_vs_reproduced.csv",
            category="Tables",
            caption="../report/reported_vs_reproduced.rst",
        ),
        markdown="results/tables/reported_vs_reproduced.md",
    log:
        "logs/reported_vs_reproduced/all.log",
    benchmark:
        "results/benchmarks/reported_vs_reproduced/all.tsv"
    conda:
        DATA_ENV
    params:
        summaries=lambda wildcards, input: as_json(
            [list(entry) for entry in zip(EXPERIMENTS, input.summaries, input.per_class)]
        ),
        quantization=lambda wildcards, input: f"--quantization-csv {input.quantization}" if input.quantization else "",
        sources=as_json(
            {
                name: ("simulated" if config["datasets"][entry["dataset"]]["source"] == "simulated" else "real")
                for name, entry in config["experiments"].items()
            }
        ),
    shell:
        "python -m workflow_scripts compare --reported-yaml {input.reported} --summaries {params.summaries:q}"
        " --data-sources {params.sources:q} {params.quantization} --output-csv {output.csv}"
        " --output-md {output.markdown} > {log} 2>&1"


# docs/results.md: each table of this run with its report caption and its figures, in the order of
# RESULTS_DOCUMENT.sections; the runtime table waits for every other section, the document for all.
from workflow_scripts.aggregate.results_document import ResultsDocument

RESULTS_DOCUMENT = ResultsDocument(
    config,
    quantized=bool(QUANTIZED),
    embedded=EMBEDDED,
    perturbation_figures=PERTURBATION_FIGURES if PERTURBED else [],
    planted_truth=bool(PLANTED_TRUTH),
    swept=SWEEP.enabled,
)


rule runtime_table:
    input:  # after every other table and figure of the run, so their jobs' benchmarks are all written
        RESULTS_DOCUMENT.timed_outputs(),
    output:
        csv=report("results/tables/runtime.csv", category="Tables", caption="../report/runtime.rst"),
        png=report("results/figures/runtime.png", category="Tables", caption="../report/runtime.rst"),
    log:
        "logs/runtime_table/all.log",
    benchmark:
        "results/benchmarks/runtime_table/all.tsv"
    conda:
        DATA_ENV
    shell:
        "python -m workflow_scripts runtime --benchmark-dir results/benchmarks --output-csv {output.csv}"
        " --output-png {output.png} > {log} 2>&1"


rule results_document:
    input:
        tables=RESULTS_DOCUMENT.tables(),
        figures=RESULTS_DOCUMENT.figures(),
        captions=RESULTS_DOCUMENT.captions(),
    output:
        "docs/results.md",
    log:
        "logs/results_document/all.log",
    benchmark:
        "results/benchmarks/results_document/all.tsv"
    conda:
        DATA_ENV
    params:
        contents=RESULTS_DOCUMENT.contents(workflow.configfiles, workflow.overwrite_configfiles),
    shell:
        "python -m workflow_scripts results-document --contents {params.contents:q} --output-md {output} > {log} 2>&1"
