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
        tokenized=WORKFLOW.experiment_tokens,
        folds="results/{experiment}/folds.tsv",
    output:
        "results/{experiment}/{method}/fold_{fold}/quantization.tsv",
    log:
        "logs/quantize_model/{experiment}/{method}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/quantize_model/{experiment}/{method}/fold_{fold}.tsv"
    conda:
        TORCH_ENV
    threads: config["resources"]["quantize"]["threads"]
    resources:
        **WORKFLOW.job_resources("quantize"),
    params:
        variants=as_json(config["quantization"]["variants"]),
        batch_sizes=as_json(config["quantization"]["batch_sizes"]),
        repeats=config["quantization"]["repeats"],
        launcher=WORKFLOW.launcher("quantize"),
    shell:
        "{params.launcher} quantize --model-dir {input.model} --tokenized-dir {input.tokenized}"
        " --folds-tsv {input.folds} --fold {wildcards.fold} --variants {params.variants:q}"
        " --batch-sizes {params.batch_sizes:q} --repeats {params.repeats} --threads {threads}"
        " --output-tsv {output} > {log} 2>&1"


rule quantization_table:
    input:
        QUANTIZATION_TABLES,
    output:
        csv=report("results/tables/quantization.csv", category="Quantization", caption="../report/quantization.rst"),
        png=report("results/figures/quantization.png", category="Quantization", caption="../report/quantization.rst"),
    log:
        "logs/quantization_table/all.log",
    benchmark:
        "results/benchmarks/quantization_table/all.tsv"
    conda:
        TORCH_ENV
    params:
        tables=lambda wildcards, input: as_json([[*run, path] for run, path in zip(QUANTIZED, input)]),
    shell:
        "python -m workflow_scripts quantization-table --tables {params.tables:q} --output-csv {output.csv}"
        " --output-png {output.png} > {log} 2>&1"
