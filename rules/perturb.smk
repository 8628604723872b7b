# In silico perturbation (config perturbation): each analysis deletes or overexpresses genes in
# start-state cells, in a fine-tuned fold's model or the pretrained one, and measures the shift of
# the cell, of every other gene and toward the goal state; on simulated data, where the planted
# driver, cooperating pair and controls rank and whether their targets move more than other genes.


rule perturb:
    input:
        checkpoint=perturbed_model,
        tokenized=f"results/tokenized/{PERTURBATION_DATASET}.dataset",
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
        analysis=alternatives(PERTURBATION_ANALYSES),
    conda:
        TORCH_ENV
    threads: 1
    params:
        start=lambda wildcards: PERTURBATION["analyses"][wildcards.analysis]["start_state"],
        direction=lambda wildcards: PERTURBATION["analyses"][wildcards.analysis]["direction"],
        state_column=PERTURBATION["state_column"],
        goal=lambda wildcards: (
            f"--goal-state {PERTURBATION['analyses'][wildcards.analysis]['goal_state']}"
            if PERTURBATION["analyses"][wildcards.analysis]["goal_state"]
            else ""
        ),
        genes=as_json(PERTURBATION["genes"]),
        combinations=as_json(PERTURBATION["combinations"]),
        truth=lambda wildcards, input: f"--truth-json {input.truth[0]}" if input.truth else "",
        settings=(
            f"--max-cells {PERTURBATION['max_cells']} --max-genes {PERTURBATION['max_genes']}"
            f" --min-cell-fraction {PERTURBATION['min_cell_fraction']} --n-null-genes {PERTURBATION['n_null_genes']}"
            f" --layer {PERTURBATION['layer']} --batch-size {PERTURBATION['batch_size']}"
            f" --min-cells {PERTURBATION['min_cells']} --n-null-pairs {PERTURBATION['n_null_pairs']}"
        ),
        checkpoint=lambda wildcards, input: (
            WORKFLOW.checkpoint_of(wildcards, input)
            if PERTURBATION["analyses"][wildcards.analysis]["model"] == "pretrained"
            else input.checkpoint[0]
        ),
        seed=config["seed"],
    shell:
        "python -m workflow_scripts perturb --checkpoint {params.checkpoint} --tokenized-dir {input.tokenized}"
        " --token-dictionary-tsv {input.tokens} --state-column {params.state_column}"
        " --start-state {params.start} {params.goal} --direction {params.direction}"
        " --genes {params.genes:q} --combinations {params.combinations:q} {params.truth} {params.settings}"
        " --analysis {wildcards.analysis} --seed {params.seed} --threads {threads}"
        " --output-tsv {output.effects}"
        " --output-gene-shifts-tsv {output.gene_shifts} > {log} 2>&1"


rule perturbation_truth:
    input:
        effects=expand("results/perturbation/{analysis}.tsv", analysis=PERTURBATION_ANALYSES),
        gene_shifts=expand("results/perturbation/{analysis}_gene_shifts.tsv", analysis=PERTURBATION_ANALYSES),
        truth=[PLANTED_TRUTH] if PLANTED_TRUTH else [],
    output:
        report("results/tables/perturbation_truth.csv", category="Perturbation", caption="../report/perturbation.rst"),
    log:
        "logs/perturbation_truth/all.log",
    benchmark:
        "results/benchmarks/perturbation_truth/all.tsv"
    conda:
        TORCH_ENV
    params:
        effects=lambda wildcards, input: as_json(list(input.effects)),
        gene_shifts=lambda wildcards, input: as_json(list(input.gene_shifts)),
    shell:
        "python -m workflow_scripts perturbation-truth --results-tsvs {params.effects:q}"
        " --gene-shifts-tsvs {params.gene_shifts:q} --truth-json {input.truth} --output-csv {output} > {log} 2>&1"


rule perturbation_figures:
    input:
        effects=expand("results/perturbation/{analysis}.tsv", analysis=PERTURBATION_ANALYSES),
        gene_shifts=expand("results/perturbation/{analysis}_gene_shifts.tsv", analysis=PERTURBATION_ANALYSES),
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
        truth=lambda wildcards, input: f"--truth-json {input.truth[0]}" if input.truth else "",
    shell:
        "python -m workflow_scripts perturbation-figures --results-tsvs {params.effects:q} --output-dir results/figures"
        " --gene-shifts-tsvs {params.gene_shifts:q} {params.truth} > {log} 2>&1"
