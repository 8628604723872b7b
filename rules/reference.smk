# Gene medians of the pretraining corpus, and the token + median dictionaries the tokenizer uses.
from workflow_scripts.reference.settings import ReferenceSettings

REFERENCE = ReferenceSettings.from_config(config["reference"], "config: reference")


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
        tokenizer=as_json(config["tokenizer"]),
    shell:
        "python -m workflow_scripts medians --h5ad-path {input} --output-tsv {output}"
        " --tokenizer {params.tokenizer:q} > {log} 2>&1"


rule reference_dictionaries:
    input:
        computed=["results/reference/gene_medians.tsv"] if REFERENCE.uses_corpus else [],
        user_files=REFERENCE.user_files,
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
        settings=as_json(config["reference"]),
        tokenizer=as_json(config["tokenizer"]),
        computed=lambda wildcards, input: f"--computed-medians-tsv {input.computed}" if input.computed else "",
    shell:
        "python -m workflow_scripts reference --settings {params.settings:q} --tokenizer {params.tokenizer:q}"
        " {params.computed} --output-token-dictionary {output.tokens} --output-medians {output.medians}"
        " > {log} 2>&1"
