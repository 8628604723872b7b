# In silico perturbation (config perturbation): each analysis deletes or overexpresses genes in
# start-state cells, in a fine-tuned fold's model or the pretrained one, and measures the shift of
# the cell, of every other gene and toward the goal state; on simulated data, where the planted
# driver, cooperating pair and controls rank and whether their targets move more than other genes.
from workflow_scripts.perturb.wiring import PerturbationWiring

PERTURBATION = PerturbationWiring(config, WORKFLOW)
# read by rule all
PERTURBED = PERTURBATION.enabled
PLANTED_TRUTH = PERTURBATION.truth
PERTURBATION_FIGURES = PERTURBATION.figures


rule perturb:
    input:
        checkpoint=PERTURBATION.checkpoint_inputs,
        tokenized=f"results/tokenized/{PERTURBATION.dataset}.dataset",
        tokens="results/reference/token_dictionary.tsv",
        truth=[PLANTED_TRUTH] if PLANTED_TRUTH else [],
    output:
        effects="results/perturbation/{analysis}.tsv",
        gene_shifts="results/perturbation/{analysis}_gene_shifts.tsv",
    log:
        "logs/perturb/{analysis}.log",
    benchmark:
        "results/benchmarks/perturb/{analysis}.tsv"
    wildcard_constraints:
        analysis=alternatives(PERTURBATION.analyses),
    conda:
        TORCH_ENV
    threads: 1
    params:
        checkpoint=PERTURBATION.checkpoint,
        settings=PERTURBATION.job_settings,
        truth=PERTURBATION.truth_flag,
        seed=config["seed"],
    shell:
        "python -m workflow_scripts perturb --checkpoint {params.checkpoint} --tokenized-dir {input.tokenized}"
        " --token-dictionary-tsv {input.tokens} --settings {params.settings:q} --analysis {wildcards.analysis}"
        " {params.truth} --seed {params.seed} --threads {threads} --output-tsv {output.effects}"
        " --output-gene-shifts-tsv {output.gene_shifts} > {log} 2>&1"


rule perturbation_truth:
    input:
        effects=expand("results/perturbation/{analysis}.tsv", analysis=PERTURBATION.analyses),
        gene_shifts=expand("results/perturbation/{analysis}_gene_shifts.tsv", analysis=PERTURBATION.analyses),
        truth=[PLANTED_TRUTH] if PLANTED_TRUTH else [],
    output:
        report("results/tables/perturbation_truth.csv", category="Perturbation", caption="../report/perturbation.rst"),
    log:
        "logs/perturbation_truth/all.log",
    benchmark:
        "results/benchmarks/perturbation_truth/all.tsv"
    conda:
        DATA_ENV
    params:
        effects=lambda wildcards, input: as_json(list(input.effects)),
        gene_shifts=lambda wildcards, input: as_json(list(input.gene_shifts)),
    shell:
        "python -m workflow_scripts perturbation-truth --results-tsvs {params.effects:q}"
        " --gene-shifts-tsvs {params.gene_shifts:q} --truth-json {input.truth} --output-csv {output} > {log} 2>&1"


rule perturbation_figures:
    input:
        effects=expand("results/perturbation/{analysis}.tsv", analysis=PERTURBATION.analyses),
        gene_shifts=expand("results/perturbation/{analysis}_gene_shifts.tsv", analysis=PERTURBATION.analyses),
        truth=[PLANTED_TRUTH] if PLANTED_TRUTH else [],
    output:
        [report(path, category="Perturbation", caption="../report/perturbation.rst") for path in PERTURBATION_FIGURES],
    log:
        "logs/perturbation_figures/all.log",
    benchmark:
        "results/benchmarks/perturbation_figures/all.tsv"
    conda:
        DATA_ENV
    params:
        effects=lambda wildcards, input: as_json(list(input.effects)),
        gene_shifts=lambda wildcards, input: as_json(list(input.gene_shifts)),
        truth=PERTURBATION.truth_flag,
    shell:
        "python -m workflow_scripts perturbation-figures --results-tsvs {params.effects:q} --output-dir results/figures"
        " --gene-shifts-tsvs {params.gene_shifts:q} {params.truth} > {log} 2>&1"
