# Masked-LM pretraining of the embedded default model (skipped when model.checkpoint or model.download is set).
# Training checkpoints go to results/pretrained_model.resume/ (removed on success): a killed job resumes when rerun.
# Pathway masking (pretraining.masking.strategy) reads a GMT file of gene sets, or the simulator's programs.
# It depends on the corpus alone (its counts and vocabulary are checked as it is tokenized), so changing an
# experiment does not rerun it; the experiments' preflight checks run first by priority (rules/preflight.smk).
from workflow_scripts.pretrain.settings import model_to_pretrain
from workflow_scripts.pretrain.wiring import PretrainWiring

PRETRAIN = PretrainWiring(config)


rule pretrain:
    input:
        tokenized="results/tokenized/corpus.dataset",
        tokens="results/reference/token_dictionary.tsv",
        gene_sets=PRETRAIN.gene_sets_input(config["pretraining"]),
    output:
        directory(PRETRAINED_MODEL),
    log:
        "logs/pretrain/pretrain.log",
    benchmark:
        "results/benchmarks/pretrain/pretrain.tsv"
    conda:
        TORCH_ENV
    threads: config["resources"]["pretrain"]["threads"]
    resources:
        **WORKFLOW.job_resources("pretrain"),
    params:
        model=as_json(model_to_pretrain(config["model"])),
        pretraining=as_json(config["pretraining"]),
        tokenizer=as_json(config["tokenizer"]),
        seed=config["seed"],
        launcher=WORKFLOW.launcher("pretrain"),
        gene_sets=lambda wildcards, input: f"--gene-sets-gmt {input.gene_sets}" if input.gene_sets else "",
        evaluation=as_json(config["pretraining"]["masking"]),
    shell:
        "{params.launcher} pretrain --tokenized-dir {input.tokenized} --token-dictionary-tsv {input.tokens}"
        " --model {params.model:q} --pretraining {params.pretraining:q} --tokenizer {params.tokenizer:q}"
        " --seed {params.seed} --threads {threads}"
        " --output-dir {output} {params.gene_sets} --evaluation-masking {params.evaluation:q} > {log} 2>&1"
