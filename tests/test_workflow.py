"""The workflow as a whole: the DAG resolves, and the tiny test preset runs end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from conftest import preset_config, snakemake


def test_dry_run_lists_every_stage_and_every_experiment_target(workdir):
    result = snakemake(workdir, "-n", "--cores", "2")
    assert result.returncode == 0, result.stderr
    for rule in ["simulate_dataset", "simulate_gene_labels", "gene_medians", "reference_dictionaries", "tokenize",
                 "check_experiment", "make_folds", "make_gene_folds", "pretrain", "finetune_fold", "baseline_fold",
                 "summarize_experiment", "plot_experiment", "all_experiments_table", "reported_vs_reproduced"]:
        assert rule in result.stdout, rule
    experiments = yaml.safe_load((workdir / "config/config.yaml").read_text())["experiments"]
    assert {"pancreas_celltype", "dosage_sensitivity", "sciplex2_two_class", "sciplex2_four_class",
            "cardiomyopathy_donor_folds", "cardiomyopathy_cell_folds"} <= set(experiments)
    for name in experiments:
        assert f"results/{name}/summary.csv" in result.stdout, name


@pytest.mark.parametrize("experiment", ["dosage_sensitivity", "cardiomyopathy_donor_folds"])
def test_one_experiment_runs_alone(workdir, experiment):
    result = snakemake(workdir, "-n", "--cores", "2", f"results/{experiment}/summary.csv")
    assert result.returncode == 0, result.stderr
    trained = {line.split("experiment=")[1].split(",")[0] for line in result.stdout.splitlines()
               if "wildcards: experiment=" in line and "method=" in line}
    assert trained == {experiment}
    checked = {line.split("results/preflight/")[1].split(".json")[0] for line in result.stdout.splitlines()
               if "output: results/preflight/" in line}
    assert checked == {experiment}, "an experiment's jobs (pretraining included) wait for its own preflight only"


def test_bad_config_stops_before_any_job(workdir):
    result = snakemake(workdir, "-n", "--cores", "1", "--config", "seed=-1")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "seed" in output and "fix:" in output


@pytest.mark.slow
def test_test_preset_end_to_end(preset_run):
    """The session's one run of the test preset (shared with the determinism test)."""
    workdir = preset_run
    experiments = preset_config()["experiments"]
    summary = pd.read_csv(workdir / "results/pancreas_celltype/summary.csv")
    methods = ["geneformer_baseline", "geneformer_enhanced", "random_init", "pca_rf", "logreg_hvg"]
    assert list(summary["method"]) == methods
    assert (summary["n_folds"] == experiments["pancreas_celltype"]["n_folds"]).all()
    for metric in ["accuracy", "macro_f1", "macro_auc"]:
        assert summary[f"{metric}_mean"].between(0, 1).all()
        assert (summary[f"{metric}_sd"] >= 0).all()
    folds = pd.read_csv(workdir / "results/pancreas_celltype/folds.tsv", sep="\t")
    majority_rate = folds["label"].value_counts(normalize=True).max()
    trained = summary[summary["method"] != "random_init"]  # a tiny model needs pretraining to learn in 8 epochs
    assert (trained["accuracy_mean"] > majority_rate + 0.05).all(), summary  # beats "always the common class"
    assert (trained["macro_auc_mean"] > 0.75).all(), summary
    assert "### Per-class F1" in (workdir / "results/pancreas_celltype/summary.md").read_text()
    everything = pd.read_csv(workdir / "results/tables/all_experiments.csv")
    assert set(everything["experiment"]) == {"pancreas_celltype", "dosage_sensitivity", "sciplex2_two_class",
                                             "sciplex2_four_class", "cardiomyopathy_donor_folds",
                                             "cardiomyopathy_cell_folds"}
    genes = pd.read_csv(workdir / "results/dosage_sensitivity/summary.csv")
    assert list(genes["method"]) == ["geneformer_baseline", "geneformer_enhanced", "random_init", "gene_pca_rf",
                                     "gene_stats_logreg"]
    assert genes["macro_auc_mean"].between(0, 1).all()
    assert (genes["n_folds"] == experiments["dosage_sensitivity"]["n_folds"]).all()
    gene_folds = pd.read_csv(workdir / "results/dosage_sensitivity/folds.tsv", sep="\t")
    predictions = pd.read_csv(workdir / "results/dosage_sensitivity/geneformer_baseline/fold_0/predictions.tsv",
                              sep="\t")
    assert set(predictions["ensembl_id"]) == set(gene_folds.loc[gene_folds["fold"] == 0, "ensembl_id"])
    assert (workdir / "results/dosage_sensitivity/figures/roc.png").exists()
    reported = pd.read_csv(workdir / "results/tables/reported_vs_reproduced.csv", dtype=str)
    sciplex = reported[reported["experiment"] == "sciplex2_two_class"]
    assert len(sciplex) == 10 and sciplex["reproduced"].str.contains("±").all()
    assert (workdir / "results/sciplex2_four_class/figures/relative_change.png").exists()
    quantization = pd.read_csv(workdir / "results/tables/quantization.csv")
    assert set(quantization["variant"]) == {"fp32", "int8_dynamic", "bf16", "fp16"}
    fp32_f1 = quantization.loc[quantization["variant"] == "fp32", "macro_f1"].iloc[0]
    assert (quantization["macro_f1"] - fp32_f1).abs().max() < 0.1  # same held-out cells, near-equal scores
    int8_rows = reported[reported["quantity"].str.contains("int8")]
    assert int8_rows["reproduced"].str.contains("MB -> |% (?:less|more)", regex=True).all(), int8_rows
    scores = pd.read_csv(workdir / "results/tables/embedding_scores.csv")
    assert list(scores["embedding"]) == ["pretrained", "random_init", "finetuned", "pca"]
    finetuned = scores.set_index("embedding").loc["finetuned"]
    assert finetuned["knn_accuracy"] > scores.set_index("embedding").loc["random_init", "knn_accuracy"]
    truth = pd.read_csv(workdir / "results/tables/perturbation_truth.csv")
    assert {"driver", "pair", "control"} <= set(truth["role"]), truth["role"].unique()
    assert {"delete", "overexpress"} <= set(truth["direction"])
    assert set(truth["analysis"]) == {"treatment", "disease_modelling", "target_deletion"}
    assert {"p_targets_greater", "target_synergy", "synergy_percentile"} <= set(truth["metric"])
    for name in ("shifts", "top_genes", "combinations", "targets"):
        assert (workdir / f"results/figures/perturbation_{name}.png").stat().st_size > 10_000
    folds = pd.read_csv(workdir / "results/cardiomyopathy_donor_folds/folds.tsv", sep="\t")
    assert (folds.groupby("group")["fold"].nunique() == 1).all()  # no donor in two folds
    for figure in ["roc", "confusion", "per_class_f1"]:
        assert (workdir / f"results/pancreas_celltype/figures/{figure}.png").stat().st_size > 10_000
    assert (workdir / "results/pretrained_model/model.safetensors").exists()
    assert (workdir / "results/pretrained_model/token_dictionary.tsv").exists()
    assert list((workdir / "logs").rglob("*.log")), "every rule logs under logs/"
    document = (workdir / "docs/results.md").read_text()
    assert all(f"## Experiment {name}\n" in document for name in experiments), "docs/results.md names each experiment"


def test_perturbation_can_be_switched_off(workdir):
    """`perturbation.model: null` plans the workflow without perturbation jobs (not a parse-time error)."""
    (workdir / "no_perturbation.yaml").write_text("perturbation:\n  model: null\n")
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/config.yaml", "no_perturbation.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule perturb" not in result.stdout and "rule finetune_fold" in result.stdout


def test_a_users_dictionary_files_are_inputs_of_the_reference_job(workdir):
    """Editing a user's token dictionary or median file rebuilds the dictionaries (and what follows)."""
    (workdir / "my_tokens.tsv").write_text("token\ttoken_id\n")
    (workdir / "my_medians.tsv").write_text("ensembl_id\tmedian\n")
    (workdir / "reference.yaml").write_text(
        yaml.safe_dump({"reference": {"token_dictionary": "my_tokens.tsv", "medians": "my_medians.tsv"}}))
    result = snakemake(workdir, "-n", "results/reference/token_dictionary.tsv", "--configfile", "reference.yaml")
    assert result.returncode == 0, result.stderr
    job = result.stdout.split("rule reference_dictionaries:")[1].split("\n\n")[0]
    assert "input: my_tokens.tsv, my_medians.tsv" in job or "input: my_medians.tsv, my_tokens.tsv" in job, job
    (workdir / "my_tokens.tsv").unlink()  # a missing user file stops the plan, naming it
    result = snakemake(workdir, "-n", "results/reference/token_dictionary.tsv", "--configfile", "reference.yaml")
    assert result.returncode != 0 and "my_tokens.tsv" in result.stdout + result.stderr


def test_replicate_seeds_train_every_fold_once_more_per_seed(workdir):
    """replicate_seeds: [7] adds fold_K_seed_7 runs (trained and baselined with seed 7) to the summary's
    inputs; the fold_K runs keep the workflow's seed, and the figures plot those alone."""
    (workdir / "replicates.yaml").write_text("replicate_seeds: [7]\n")
    result = snakemake(workdir, "-n", "-p", "results/pancreas_celltype/summary.csv",
                       "results/pancreas_celltype/figures/roc.png", "--configfile", "config/config.yaml",
                       "replicates.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "python -m workflow_scripts" in line]
    replicate = [line for line in commands if "geneformer_enhanced/fold_1_seed_7/predictions.tsv" in line
                 and " finetune " in line]
    main = [line for line in commands if "geneformer_enhanced/fold_1/predictions.tsv" in line and " finetune " in line]
    assert len(replicate) == 1 and "--fold 1 " in replicate[0] and "--seed 7 " in replicate[0]
    assert len(main) == 1 and "--seed 42 " in main[0]
    summarize = next(line for line in commands if " summarize " in line)
    figures = next(line for line in commands if " figures " in line)
    assert '"pca_rf", 4, 7,' in summarize and "seed_7" not in figures
