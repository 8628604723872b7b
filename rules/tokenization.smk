# Rank-value encoding of each dataset into Geneformer's `datasets` format.


rule tokenize:
    input:
        h5ad="results/data/{dataset}.h5ad",
        tokens="results/reference/token_dictionary.tsv",
        medians="results/reference/medians_used.tsv",
    output:
        directory("results/tokenized/{dataset}.dataset"),
    log:
        "logs/tokenize/{dataset}.log",
    benchmark:
        "results/benchmarks/tokenize/{dataset}.tsv"
    conda:
        DATA_ENV
    threads: config["resources"]["tokenize"]["threads"]
    resources:
        **WORKFLOW.job_resources("tokenize"),
    params:
        settings=as_json(config["tokenizer"]),
        checks=as_json(config["checks"]),
        obs_columns=WORKFLOW.obs_columns,
    shell:
        "python -m workflow_scripts tokenize --h5ad-path {input.h5ad} --token-dictionary-tsv {input.tokens}"
        " --medians-tsv {input.medians} --output-dir {output} --settings {params.settings:q}"
        " --checks {params.checks:q} --obs-columns {params.obs_columns:q} --threads {threads} > {log} 2>&1"
