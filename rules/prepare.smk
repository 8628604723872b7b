# Real data: verified, resumable downloads (datasets, a checkpoint, gene label files), each dataset
# turned into the canonical raw-count h5ad (counts in X, Ensembl IDs in var, n_counts, the obs
# columns the experiments use), and gene class pickles turned into label TSVs.
from workflow_scripts.prepare.wiring import CHECKSUM_RECORD, PrepareWiring

PREPARE = PrepareWiring(config)


rule download_file:
    output:
        "results/downloads/{source}/{filename}",
    log:
        "logs/download_file/{source}/{filename}.log",
    benchmark:
        "results/benchmarks/download_file/{source}/{filename}.tsv"
    wildcard_constraints:
        source=alternatives(PREPARE.download_sources()),
    retries: 2
    conda:
        DATA_ENV
    params:
        settings=lambda wildcards: as_json(PREPARE.downloaded_file(wildcards)),
        record=CHECKSUM_RECORD,
    shell:
        "python -m workflow_scripts download --settings {params.settings:q} --output {output}"
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
        unpack(PREPARE.source_files),
    output:
        "results/data/{dataset}.h5ad",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=alternatives(PREPARE.prepared),
    conda:
        DATA_ENV
    params:
        settings=lambda wildcards: as_json(PREPARE.dataset(wildcards)),
        inputs=lambda wildcards, input: as_json(dict(input.items())),
        columns=WORKFLOW.obs_columns,
    shell:
        "python -m workflow_scripts prepare --settings {params.settings:q} --inputs {params.inputs:q}"
        " --obs-columns {params.columns:q} --output-h5ad {output} > {log} 2>&1"
