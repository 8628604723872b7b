# Cell and gene embeddings of one dataset (config embeddings.dataset) from the pretrained model, a
# fine-tuned fold's model and the same architecture with random weights, beside PCA of the counts:
# UMAPs and label separation / batch mixing scores in one table.
from workflow_scripts.embeddings.wiring import EmbeddingWiring

EMBEDDING = EmbeddingWiring(config, WORKFLOW)
EMBEDDED = EMBEDDING.enabled  # read by rule all


rule embed_cells:
    input:
        checkpoint=EMBEDDING.checkpoint_inputs,
        tokenized=f"results/tokenized/{EMBEDDING.settings.dataset}.dataset",
        tokens="results/reference/token_dictionary.tsv",
    output:
        npy="results/embeddings/{model}/cells.npy",
        genes="results/embeddings/{model}/genes.npz",
        h5ad="results/embeddings/{model}/cells.h5ad",
    log:
        "logs/embed_cells/{model}.log",
    benchmark:
        "results/benchmarks/embed_cells/{model}.tsv"
    wildcard_constraints:
        model=alternatives(EMBEDDING.models),
    conda:
        TORCH_ENV
    params:
        checkpoint=EMBEDDING.checkpoint,
        init=EMBEDDING.init,
        settings=EMBEDDING.settings_json,
        seed=config["seed"],
    shell:
        "python -m workflow_scripts embeddings --checkpoint {params.checkpoint} --tokenized-dir {input.tokenized}"
        " --token-dictionary-tsv {input.tokens} --init {params.init} --settings {params.settings:q}"
        " --seed {params.seed} --output-npy {output.npy} --output-gene-npz {output.genes} --output-h5ad {output.h5ad} > {log} 2>&1"


rule pca_embedding:
    input:
        h5ad=f"results/data/{EMBEDDING.settings.dataset}.h5ad",
        cells="results/embeddings/pretrained/cells.h5ad",
    output:
        "results/embeddings/pca/cells.h5ad",
    log:
        "logs/pca_embedding/pca.log",
    benchmark:
        "results/benchmarks/pca_embedding/pca.tsv"
    conda:
        DATA_ENV
    params:
        settings=EMBEDDING.settings_json,
        seed=config["seed"],
    shell:
        "python -m workflow_scripts pca-embedding --h5ad-path {input.h5ad} --cells-h5ad {input.cells}"
        " --settings {params.settings:q} --seed {params.seed} --output-h5ad {output} > {log} 2>&1"


rule score_embeddings:
    input:
        expand("results/embeddings/{model}/cells.h5ad", model=EMBEDDING.scored),
    output:
        csv=report("results/tables/embedding_scores.csv", category="Embeddings", caption="../report/embeddings.rst"),
        png=report("results/figures/embedding_umap.png", category="Embeddings", caption="../report/embeddings.rst"),
    log:
        "logs/score_embeddings/all.log",
    benchmark:
        "results/benchmarks/score_embeddings/all.tsv"
    conda:
        DATA_ENV
    params:
        embeddings=EMBEDDING.labelled_embeddings,
        settings=EMBEDDING.settings_json,
        seed=config["seed"],
    shell:
        "python -m workflow_scripts score-embeddings --embeddings {params.embeddings:q} --settings {params.settings:q}"
        " --seed {params.seed} --output-csv {output.csv} --output-png {output.png} > {log} 2>&1"
