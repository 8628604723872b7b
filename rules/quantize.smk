# Quantization and inference benchmarks of the fine-tuned models named in config (quantization.models):
# each variant (fp32, torchao int8, bf16, fp16) of a fold's model scored on that fold's held-out cells.
QUANTIZED = [
    (model["experiment"], model["method"], fold)
    for model in config["quantization"]["models"]
    for fold in config["quantization"]["folds"]
]
QUANTIZATION_TABLES = [f"results/{e}/{m}/fold_{f}/quantization.tsv" for e, m, f in QUANTIZED]


rule quantize_model:
    input:
        model="results/{experiment}/{method}/fold_{fold}/model",
        tokenized=experiment_tokens,
        folds="results/{experiment}/folds.tsv",
    output:
        "results/{experiment}/{method}/fold_{fold}/quantization.tsv",
    params:
        variants=as_json(config["quantization"]["variants"]),
        batch_sizes=as_json(config["quantization"]["batch_sizes"]),
        repeats=config["quantization"]["repeats"],
    threads: config["resources"]["quantize"]["threads"]
    resources:
        gpu=config["resources"]["quantize"]["gpu"],
        mem_mb=config["resources"]["quantize"]["mem_mb"],
        runtime=config["resources"]["quantize"]["runtime"],
    conda:
        CONDA_ENV
    log:
        "logs/quantize_model/{experiment}/{method}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/quantize_model/{experiment}/{method}/fold_{fold}.tsv"
    shell:
        "python -m workflow_scripts quantize --model-dir {input.model} --tokenized-dir {input.tokenized}"
        " --folds-tsv {input.folds} --fold {wildcards.fold} --variants {params.variants:q}"
        " --batch-sizes {params.batch_sizes:q} --repeats {params.repeats} --threads {threads}"
        " --output-tsv {output} > {log} 2>&1"


rule quantization_table:
    input:
        QUANTIZATION_TABLES,
    output:
        csv=report("results/tables/quantization.csv", category="Quantization", caption="../report/quantization.rst"),
        png=report("results/figures/quantization.png", category="Quantization", caption="../report/quantization.rst"),
    params:
        tables=lambda wildcards, input: as_json([[*run, path] for run, path in zip(QUANTIZED, input)]),
    conda:
        CONDA_ENV
    log:
        "logs/quantization_table/all.log",
    benchmark:
        "results/benchmarks/quantization_table/all.tsv"
    shell:
        "python -m workflow_scripts quantization-table --tables {params.tables:q} --output-csv {output.csv}"
        " --output-png {output.png} > {log} 2>&1"
