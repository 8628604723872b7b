"""The config schema: defaults filled, bad configs refused with the key named."""

import copy

import pytest
import yaml
from conftest import DEFAULT_CONFIG_PATH

from workflow_scripts.ablation.variants import variant_settings
from workflow_scripts.core.config import (
    embedded_model_caveat,
    load_config,
    method_settings,
    validate_config,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.prepare.settings import DatasetSettings, DownloadSettings
from workflow_scripts.prepare.wiring import PrepareWiring
from workflow_scripts.pretrain.settings import (
    ModelSettings,
    PretrainingSettings,
    model_to_pretrain,
)
from workflow_scripts.reference.settings import ReferenceSettings

REPO = DEFAULT_CONFIG_PATH.parent.parent


def test_default_and_presets_are_valid():
    config = load_config(DEFAULT_CONFIG_PATH)
    assert config["finetuning"]["weight_decay"] == 0.001  # Geneformer default filled by the schema
    assert config["model"]["layer_norm_eps"] == 1e-12
    load_config(DEFAULT_CONFIG_PATH, REPO / "config" / "test.yaml")


@pytest.mark.parametrize("preset", [[], ["test.yaml"], ["paper.yaml"]])
def test_every_section_a_job_reads_parses_into_its_settings(preset):
    """The Settings classes name exactly the keys the schema fills: a key added to one and not the
    other would stop the job that reads it at parse time."""
    config = load_config(DEFAULT_CONFIG_PATH, *[REPO / "config" / name for name in preset])
    TokenizerSettings.from_config(config["tokenizer"])
    ChecksSettings.from_config(config["checks"])
    ReferenceSettings.from_config(config["reference"])
    ModelSettings.from_config(model_to_pretrain(config["model"]))
    assert PretrainingSettings.from_config(config["pretraining"]).masking.strategy == "random"
    for name, entry in config["datasets"].items():
        DatasetSettings.from_config(entry, f"datasets.{name}")
    downloads = [entry for files in PrepareWiring(config).downloads.values() for entry in files.values()]
    assert bool(downloads) == ("paper.yaml" in preset)
    for entry in downloads:
        DownloadSettings.from_config(entry)
    for variant in config["ablation"]["variants"]:
        settings = variant_settings(config, variant)
        ModelSettings.from_config(settings["model"])
        PretrainingSettings.from_config(settings["pretraining"])


def test_method_overrides_merge_over_global_finetuning():
    config = load_config(DEFAULT_CONFIG_PATH)
    settings = method_settings(config, "pancreas_celltype", "geneformer_enhanced")["finetuning"]
    assert settings["freeze_layers"] == 2 and settings["loss"] == "focal"
    assert settings["learning_rate"] == config["finetuning"]["learning_rate"]
    baseline = method_settings(config, "pancreas_celltype", "geneformer_baseline")["finetuning"]
    assert baseline["freeze_layers"] == 0 and baseline["loss"] == "cross_entropy"


def raw_default():
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


COMMIT = "04c2b2e84da7c0f385c3f9ad8f3ec24bab6650e5"


def hub_checkpoint(revision):
    root = f"https://huggingface.co/ctheodoris/Geneformer/resolve/{revision}/Geneformer-V1-10M"
    return {"config": {"url": f"{root}/config.json", "filename": "config.json"},
            "weights": {"url": f"{root}/model.safetensors", "filename": "model.safetensors"}}


def test_paper_preset_pins_the_checkpoint():
    config = load_config(DEFAULT_CONFIG_PATH, REPO / "config" / "paper.yaml")
    files = config["model"]["download"]
    assert {entry["filename"] for entry in files.values()} == {"config.json", "model.safetensors"}
    assert all(f"/resolve/{COMMIT}/" in entry["url"] and entry["sha256"] and entry["size"] for entry in files.values())
    validate_config(copy.deepcopy({**raw_default(), "model": {"download": hub_checkpoint(COMMIT)}}))


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["finetuning"].update(epochs=0), "finetuning.epochs"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (lambda c: c["model"].update(hidden_act="tanh"), "model.hidden_act"),
        (lambda c: c["experiments"]["pancreas_celltype"].update(dataset="nowhere"), "dataset"),
        (lambda c: c["experiments"]["pancreas_celltype"]["methods"]["geneformer_baseline"].update(
            finetuning={"learning_rte": 1}), "methods.geneformer_baseline.finetuning"),
        (lambda c: c["experiments"]["pancreas_celltype"]["methods"]["geneformer_baseline"].update(
            finetuning={"epochs": 2, "head_only_epochs": 3}), "head_only_epochs"),
        (lambda c: c["experiments"]["pancreas_celltype"].update(reference_method="nope"), "reference_method"),
        (lambda c: c["experiments"]["pancreas_celltype"].update(split="grouped"), "group_column"),
        (lambda c: c["datasets"].update(mine={"source": "h5ad"}), "datasets.mine"),
        (lambda c: c["experiments"]["pancreas_celltype"].pop("label_column"), "label_column"),
        (lambda c: c["experiments"]["dosage_sensitivity"].pop("gene_labels"), "gene_labels"),
        (lambda c: c["experiments"]["dosage_sensitivity"].update(label_column="cell_type"), "label_column"),
        (lambda c: c["experiments"]["dosage_sensitivity"]["methods"].update(hvg={"kind": "logreg_hvg"}),
         "methods.hvg.kind"),
        (lambda c: c["experiments"]["pancreas_celltype"]["methods"].update(genes={"kind": "gene_pca_rf"}),
         "methods.genes.kind"),
        (lambda c: c["experiments"]["dosage_sensitivity"]["methods"]["geneformer_baseline"].update(
            finetuning={"upsample": True}), "upsample"),
        (lambda c: c["datasets"]["pancreas"].update(source="h5ad", path="mine.h5ad"), "gene_labels"),
        (lambda c: c["experiments"]["dosage_sensitivity"].update(gene_labels="simulated"),
         "simulated:network_central_vs_peripheral"),  # the old form: the sets are listed
        (lambda c: c["experiments"]["dosage_sensitivity"].update(gene_labels="simulated:dosage_genes"),
         "dosage_sensitivity.gene_labels"),
        (lambda c: c["experiments"]["dosage_sensitivity"].update(gene_labels="simulated:bivalent_vs_lys4_only"),
         "set dataset: stem_cells"),
        (lambda c: c["experiments"]["dosage_sensitivity"].update(test_cell_fraction=1.0), "test_cell_fraction"),
        (lambda c: c["model"].update(download=hub_checkpoint("main")), "model.download.config.url"),
        (lambda c: c["model"].update(download=hub_checkpoint("v1.0")), "a branch or tag that can move"),
        (lambda c: c["model"].update(checkpoint="mine", download=hub_checkpoint(COMMIT)), "both set"),
        (lambda c: c["model"].update(download={"weights": hub_checkpoint(COMMIT)["weights"]}), "model.download"),
        (lambda c: c["experiments"]["dosage_sensitivity"].update(gene_labels={"url": "https://x/y.pickle"}),
         "gene_labels"),
    ],
)
def test_bad_config_refused_naming_the_key(edit, named):
    config = raw_default()
    edit(config)
    with pytest.raises(InputError) as error:
        validate_config(copy.deepcopy(config))
    assert named in str(error.value)
    assert "fix:" in str(error.value)


def test_removing_experiments_drops_what_names_them(caplog):
    """The README's way to drop an experiment (set it to null) takes its quantization, embedding and
    perturbation models with it, naming each dropped key, instead of refusing the config."""
    removed = {"experiments": {"pancreas_celltype": None, "cardiomyopathy_cell_folds": None,
                               "cardiomyopathy_donor_folds": None}}
    with caplog.at_level("WARNING", logger="workflow_scripts.core.config"):
        config = load_config(DEFAULT_CONFIG_PATH, overrides=removed)
    assert config["quantization"]["models"] == []
    assert config["embeddings"]["finetuned"] is None and config["perturbation"]["model"] is None
    assert "quantization.models[0]" in caplog.text and "embeddings.finetuned, perturbation.model" in caplog.text
    misspelt = {"quantization": {"models": [{"experiment": "pancreas_cell_type", "method": "geneformer_enhanced"}]}}
    with pytest.raises(InputError, match="quantization.models"):  # a name that never existed is still refused
        load_config(DEFAULT_CONFIG_PATH, overrides=misspelt)


USER_DATA = {"datasets": {"mine": {"source": "h5ad", "path": "data/mine.h5ad"}},
             "experiments": {"my_cells": {"dataset": "mine", "label_column": "cell_type",
                                          "methods": {"geneformer": {"kind": "finetune"}}}}}


def test_real_data_beside_the_simulated_corpus_gets_geneformers_dictionaries(caplog):
    """reference.* auto: the corpus's own dictionaries for simulated experiments, Geneformer's published
    ones as soon as one experiment's data is real; a user who keeps `corpus` for real data is warned."""
    assert load_config(DEFAULT_CONFIG_PATH)["reference"] == {"medians": "corpus", "token_dictionary": "corpus"}
    with caplog.at_level("WARNING", logger="workflow_scripts.core.config"):
        config = load_config(DEFAULT_CONFIG_PATH, overrides=USER_DATA)
    assert config["reference"] == {"medians": "geneformer_v1", "token_dictionary": "geneformer_v1"}
    assert "experiments.my_cells: the fine-tuned model is the embedded default" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="workflow_scripts.core.config"):
        load_config(DEFAULT_CONFIG_PATH, overrides={**USER_DATA, "reference": {"token_dictionary": "corpus"}})
    assert "reference.token_dictionary is corpus" in caplog.text and "reference.medians" not in caplog.text


def test_the_embedded_model_caveat_is_for_real_data_without_a_checkpoint(tmp_path):
    config = load_config(DEFAULT_CONFIG_PATH, overrides=USER_DATA)
    assert "embedded default" in embedded_model_caveat(config, "my_cells")
    assert embedded_model_caveat(config, "pancreas_celltype") is None  # simulated cells: the model's own world
    with_checkpoint = load_config(DEFAULT_CONFIG_PATH, overrides={**USER_DATA, "model": {"checkpoint": str(tmp_path)}})
    assert embedded_model_caveat(with_checkpoint, "my_cells") is None
