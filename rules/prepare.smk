# Real data: verified, resumable downloads (datasets, a checkpoint, gene label files), each dataset
# turned into the canonical raw-count h5ad (counts in X, Ensembl IDs in var, n_counts, the obs
# columns the experiments use), and gene class pickles turned into label TSVs.


rule download_file:
    output:
        "results/downloads/{source}/{filename}",
    log:
        "logs/download_file/{source}/{filename}.log",
    benchmark:
        "results/benchmarks/download_file/{source}/{filename}.tsv"
    wildcard_constraints:
        source=alternatives([source for source, files in DOWNLOADS.items() if files]),
    retries: 2
    conda:
        DATA_ENV
    params:
        record=CHECKSUM_RECORD,
        url=lambda wildcards: downloaded_file(wildcards)["url"],
        checks=lambda wildcards: " ".join(
            f"--{key} {downloaded_file(wildcards)[key]}"
            for key in ("sha256", "size")
            if downloaded_file(wildcards).get(key)
        ),
    shell:
        "python -m workflow_scripts download --url {params.url:q} --output {output} {params.checks}"
        " --checksum-record {params.record} > {log} 2>&1"


rule gene_labels_from_pickle:
    input:
        lambda wildcards: WORKFLOW.gene_label_source(wildcards.experiment),
    output:
        "results/gene_labels/{experiment}.tsv",
    log:
        "logs/gene_labels_from_pickle/{experiment}.log",
    benchmark:
        "results/benchmarks/gene_labels_from_pickle/{experiment}.tsv"
    conda:
        DATA_ENV
    shell:
        "python -m workflow_scripts gene-labels-from-pickle --path {input} --output-tsv {output} > {log} 2>&1"


rule prepare_dataset:
    input:
        unpack(source_files),
    output:
        "results/data/{dataset}.h5ad",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(PREPARED),
    conda:
        DATA_ENV
    params:
        format=lambda wildcards: config["datasets"][wildcards.dataset]["format"],
        inputs=lambda wildcards, input: as_json(dict(input.items())),
        columns=WORKFLOW.obs_columns,
        options=lambda wildcards: as_json(config["datasets"][wildcards.dataset]["options"]),
    shell:
        "python -m workflow_scripts prepare --format {params.format} --inputs {params.inputs:q}"
        " --obs-columns {params.columns:q} --options {params.options:q} --output-h5ad {output} > {log} 2>&1"
