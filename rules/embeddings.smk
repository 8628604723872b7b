# Cell and gene embeddings of one dataset (config embeddings.dataset) from the pretrained model, a
# fine-tuned fold's model and the same architecture with random weights, beside PCA of the counts:
# UMAPs and label separation / batch mixing scores in one table.


rule embed_cells:
    input:
        checkpoint=embedding_checkpoint,
        tokenized=f"results/tokenized/{EMBEDDING['dataset']}.dataset",
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
        model=alternatives(EMBEDDING_MODELS),
    conda:
        TORCH_ENV
    params:
        checkpoint=lambda wildcards, input: (
            input.checkpoint[0] if wildcards.model == "finetuned" else WORKFLOW.checkpoint_of(wildcards, input)
        ),
        init=lambda wildcards: "random" if wildcards.model == "random_init" else "pretrained",
        columns=as_json([column for column in (EMBEDDING["label_column"], EMBEDDING["batch_column"]) if column]),
        max_cells=f"--max-cells {EMBEDDING['max_cells']}" if EMBEDDING["max_cells"] else "",
        layer=EMBEDDING["layer"],
        dtype=EMBEDDING["dtype"],
        batch_size=EMBEDDING["batch_size"],
        seed=config["seed"],
    shell:
        "python -m workflow_scripts embeddings --checkpoint {params.checkpoint} --tokenized-dir {input.tokenized}"
        " --token-dictionary-tsv {input.tokens} --init {params.init} --layer {params.layer} --dtype {params.dtype}"
        " --batch-size {params.batch_size} {params.max_cells} --seed {params.seed} --obs-columns {params.columns:q}"
        " --output-npy {output.npy} --output-gene-npz {output.genes} --output-h5ad {output.h5ad} > {log} 2>&1"


rule pca_embedding:
    input:
        h5ad=f"results/data/{EMBEDDING['dataset']}.h5ad",
        cells="results/embeddings/pretrained/cells.h5ad",
    output:
        "results/embeddings/pca/cells.h5ad",
    log:
        "logs/pca_embedding/pca.log",
    benchmark:
        "results/benchmarks/pca_embedding/pca.tsv"
    conda:
        TORCH_ENV
    params:
        n_components=EMBEDDING["pca_components"],
        seed=config["seed"],
    shell:
        "python -m workflow_scripts pca-embedding --h5ad-path {input.h5ad} --cells-h5ad {input.cells}"
        " --n-components {params.n_components} --seed {params.seed} --output-h5ad {output} > {log} 2>&1"


rule score_embeddings:
    input:
        expand("results/embeddings/{model}/cells.h5ad", model=EMBEDDING_MODELS + ["pca"]),
    output:
        csv=report("results/tables/embedding_scores.csv", category="Embeddings", caption="../report/embeddings.rst"),
        png=report("results/figures/embedding_umap.png", category="Embeddings", caption="../report/embeddings.rst"),
    log:
        "logs/score_embeddings/all.log",
    benchmark:
        "results/benchmarks/score_embeddings/all.tsv"
    conda:
        TORCH_ENV
    params:
        embeddings=lambda wildcards, input: as_json(
            [[name, path] for name, path in zip(EMBEDDING_MODELS + ["pca"], input)]
        ),
        label=EMBEDDING["label_column"],
        batch=f"--batch-column {EMBEDDING['batch_column']}" if EMBEDDING["batch_column"] else "",
        seed=config["seed"],
    shell:
        "python -m workflow_scripts score-embeddings --embeddings {params.embeddings:q} --label-column {params.label}"
        " {params.batch} --seed {params.seed} --output-csv {output.csv} --output-png {output.png} > {log} 2>&1"
