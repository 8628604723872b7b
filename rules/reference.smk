# Gene medians of the pretraining corpus, and the token + median dictionaries the tokenizer uses.
USES_CORPUS = "corpus" in (config["reference"]["medians"], config["reference"]["token_dictionary"])


rule gene_medians:
    input:
        "results/data/corpus.h5ad",
    output:
        "results/reference/gene_medians.tsv",
    log:
        "logs/gene_medians/corpus.log",
    benchmark:
        "results/benchmarks/gene_medians/corpus.tsv"
    conda:
        DATA_ENV
    params:
        chunk_size=config["tokenizer"]["chunk_size"],
    shell:
        "python -m workflow_scripts medians --h5ad-path {input} --output-tsv {output}"
        " --chunk-size {params.chunk_size} > {log} 2>&1"


rule reference_dictionaries:
    input:
        computed=["results/reference/gene_medians.tsv"] if USES_CORPUS else [],
    output:
        tokens="results/reference/token_dictionary.tsv",
        medians="results/reference/medians_used.tsv",
    log:
        "logs/reference_dictionaries/reference.log",
    benchmark:
        "results/benchmarks/reference_dictionaries/reference.tsv"
    conda:
        DATA_ENV
    params:
        medians=config["reference"]["medians"],
        tokens=config["reference"]["token_dictionary"],
        computed=lambda wildcards, input: f"--computed-medians-tsv {input.computed}" if input.computed else "",
        special_tokens=as_json(config["tokenizer"]["special_tokens"]),
    shell:
        "python -m workflow_scripts reference --medians-source {params.medians:q}"
        " --token-dictionary-source {params.tokens:q} {params.computed}"
        " --special-tokens {params.special_tokens} --output-token-dictionary {output.tokens}"
        " --output-medians {output.medians} > {log} 2>&1"
