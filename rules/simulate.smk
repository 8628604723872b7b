# Embedded default: seeded simulated raw-count AnnData for every dataset with source: simulated,
# the gene label file of each planted label set and the world's gene programs as gene sets.
SIMULATED = [name for name, entry in config["datasets"].items() if entry["source"] == "simulated"]


rule simulate_dataset:
    output:
        h5ad="results/data/{dataset}.h5ad",
        truth="results/data/{dataset}.truth.json",
    log:
        "logs/simulate_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/simulate_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(SIMULATED),
    conda:
        DATA_ENV
    params:
        settings=as_json(config["simulation"]),
        seed=config["seed"],
    shell:
        "python -m workflow_scripts simulate --name {wildcards.dataset} --settings {params.settings:q}"
        " --seed {params.seed} --output-h5ad {output.h5ad} --output-truth {output.truth} > {log} 2>&1"


rule simulate_gene_labels:
    input:
        truth=WORKFLOW.label_set_truth,
    output:
        SIMULATED_GENE_LABELS,
    log:
        "logs/simulate_gene_labels/{label_set}.log",
    benchmark:
        "results/benchmarks/simulate_gene_labels/{label_set}.tsv"
    wildcard_constraints:
        label_set=alternatives(list(GENE_LABEL_SETS)),
    conda:
        DATA_ENV
    params:
        settings=as_json(config["simulation"]),
        seed=config["seed"],
        truth=lambda wildcards, input: f"--truth-json {input.truth}" if input.truth else "",
    shell:
        "python -m workflow_scripts gene-labels --label-set {wildcards.label_set} --settings {params.settings:q}"
        " --seed {params.seed} {params.truth} --output-tsv {output} > {log} 2>&1"


rule simulate_gene_sets:
    output:
        SIMULATED_GENE_SETS,
    log:
        "logs/simulate_gene_sets/gene_sets.log",
    benchmark:
        "results/benchmarks/simulate_gene_sets/gene_sets.tsv"
    conda:
        DATA_ENV
    params:
        settings=as_json(config["simulation"]),
        seed=config["seed"],
    shell:
        "python -m workflow_scripts gene-sets --settings {params.settings:q} --seed {params.seed}"
        " --output-gmt {output} > {log} 2>&1"
