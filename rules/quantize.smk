# Quantization and inference benchmarks of the fine-tuned models named in config (quantization.models):
# each variant (fp32, torchao int8, bf16, fp16) of a fold's model scored on that fold's held-out cells.
from workflow_scripts.quantize.wiring import QuantizationWiring

QUANTIZATION = QuantizationWiring(config)
QUANTIZED = QUANTIZATION.runs  # read by rule all and rules/aggregate.smk


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
        settings=QUANTIZATION.job_settings,
        launcher=WORKFLOW.launcher("quantize"),
    shell:
        "{params.launcher} quantize --model-dir {input.model} --tokenized-dir {input.tokenized}"
        " --folds-tsv {input.folds} --fold {wildcards.fold} --settings {params.settings:q} --threads {threads}"
        " --output-tsv {output} > {log} 2>&1"


rule quantization_table:
    input:
        QUANTIZATION.tables,
    output:
        csv=report("results/tables/quantization.csv", category="Quantization", caption="../report/quantization.rst"),
        png=report("results/figures/quantization.png", category="Quantization", caption="../report/quantization.rst"),
    log:
        "logs/quantization_table/all.log",
    benchmark:
        "results/benchmarks/quantization_table/all.tsv"
    conda:
        DATA_ENV
    params:
        tables=QUANTIZATION.labelled_tables,
    shell:
        "python -m workflow_scripts quantization-table --tables {params.tables:q} --output-csv {output.csv}"
        " --output-png {output.png} > {log} 2>&1"
