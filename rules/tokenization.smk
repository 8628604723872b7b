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
        model_input_size=config["tokenizer"]["model_input_size"],
        special_tokens=as_json(config["tokenizer"]["special_tokens"]),
        chunk_size=config["tokenizer"]["chunk_size"],
        min_genes=config["checks"]["min_genes_in_vocabulary"],
        obs_columns=WORKFLOW.obs_columns,
    shell:
        "python -m workflow_scripts tokenize --h5ad-path {input.h5ad} --token-dictionary-tsv {input.tokens}"
        " --medians-tsv {input.medians} --output-dir {output} --model-input-size {params.model_input_size}"
        " --special-tokens {params.special_tokens} --chunk-size {params.chunk_size}"
        " --obs-columns {params.obs_columns:q} --min-genes-in-vocabulary {params.min_genes} --threads {threads}"
        " > {log} 2>&1"
