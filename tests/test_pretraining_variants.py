"""Pretraining variants: model presets, ALBERT's factorized embeddings and shared layers (parameter
counts, saving and loading, freezing), and the ablation's settings, table and DAG."""

import json

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEFAULT_CONFIG_PATH, preset_config, snakemake
from transformers import AutoModel

from workflow_scripts.ablation.variants import (
    collect_ablation,
    downstream_finetuning,
    variant_settings,
)
from workflow_scripts.core.config import load_config
from workflow_scripts.core.dictionaries import load_token_dictionary
from workflow_scripts.core.encoder import encoder, load_encoder_model
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.model import (
    classifier,
    freeze,
    geneformer_config,
    masked_lm_parameter_count,
    model_shape,
    new_masked_lm,
    parameter_count,
)
from workflow_scripts.core.sections import TokenizerSettings
from workflow_scripts.pretrain.pretraining import (
    SUMMARY_FILE,
    pretrain_model,
)
from workflow_scripts.pretrain.settings import (
    ModelSettings,
    PretrainingSettings,
    model_to_pretrain,
)

CONFIG = load_config(DEFAULT_CONFIG_PATH)
MODEL = {**model_to_pretrain(CONFIG["model"]),
         "num_hidden_layers": 3, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
V, P = 50, 32  # vocabulary, positions
MODEL_SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def layer_parameters(hidden, intermediate):
    """One post-LN transformer layer: Q, K, V, output projections, two LayerNorms, the two FFN linears."""
    return 4 * (hidden * hidden + hidden) + 2 * hidden + (hidden * intermediate + intermediate) \
        + (intermediate * hidden + hidden) + 2 * hidden


def bert_mlm_parameters(vocab, positions, hidden, layers, intermediate):
    embeddings = vocab * hidden + positions * hidden + 2 * hidden + 2 * hidden  # words, positions, 2 types, LN
    head = hidden * hidden + hidden + 2 * hidden + vocab  # transform, LN, decoder bias (decoder tied to words)
    return embeddings + layers * layer_parameters(hidden, intermediate) + head


def albert_mlm_parameters(vocab, positions, embedding, hidden, distinct_layers, intermediate):
    embeddings = vocab * embedding + positions * embedding + 2 * embedding + 2 * embedding
    projection = embedding * hidden + hidden  # embedding_size -> hidden
    head = hidden * embedding + embedding + 2 * embedding + vocab  # hidden -> embedding, LN, bias (tied decoder)
    return embeddings + projection + distinct_layers * layer_parameters(hidden, intermediate) + head


def test_presets_fill_the_shape_and_explicit_keys_win():
    shape = model_shape({"preset": "geneformer_106m", "hidden_size": None, "num_hidden_layers": 4})
    assert (shape["num_hidden_layers"], shape["hidden_size"], shape["num_attention_heads"],
            shape["intermediate_size"]) == (4, 768, 12, 3072)
    assert model_shape({**CONFIG["model"]})["hidden_size"] == 64  # config.yaml: cpu_small
    with pytest.raises(InputError, match="no preset"):
        model_shape({"preset": None, "hidden_size": 8})


def test_geneformer_v1_10m_preset_has_the_model_cards_parameter_count():
    """BioNeMo's model card: geneformer-10M has 10.3M parameters (V1 vocabulary, 2,048 inputs)."""
    vocab = len(load_token_dictionary("geneformer_v1_tokens"))
    assert vocab == 25426
    ten_m = masked_lm_parameter_count({**MODEL, **dict.fromkeys(MODEL_SHAPE_KEYS), "preset": "geneformer_v1_10m"},
                                      vocab, 2048)
    assert ten_m == bert_mlm_parameters(vocab, 2048, 256, 6, 512)
    assert abs(ten_m / 10.3e6 - 1) < 0.02
    big = masked_lm_parameter_count({**MODEL, **dict.fromkeys(MODEL_SHAPE_KEYS), "preset": "geneformer_106m"},
                                    vocab, 2048)
    assert abs(big / 106e6 - 1) < 0.02


@pytest.mark.parametrize("embedding_size, share_layers", [(None, False), (8, False), (16, True), (8, True)])
def test_factorized_and_shared_parameter_counts_match_their_formulas(embedding_size, share_layers):
    settings = {**MODEL, "architecture": "albert", "embedding_size": embedding_size, "share_layers": share_layers}
    model = new_masked_lm(geneformer_config(settings, V, P), seed=0)
    expected = albert_mlm_parameters(V, P, embedding_size or 16, 16, 1 if share_layers else 3, 32)
    assert parameter_count(model) == expected == masked_lm_parameter_count(settings, V, P)
    bert = new_masked_lm(geneformer_config(MODEL, V, P), seed=0)
    assert parameter_count(bert) == bert_mlm_parameters(V, P, 16, 3, 32)


def test_albert_options_need_the_albert_architecture():
    with pytest.raises(InputError, match="architecture: albert"):
        geneformer_config({**MODEL, "share_layers": True}, V, P)


@pytest.fixture
def corpus(tmp_path):
    """60 cells of gene tokens (4..49) in three programs of genes, a token dictionary and a GMT file."""
    rng = np.random.default_rng(0)
    programs = [np.arange(4 + 10 * k, 14 + 10 * k) for k in range(3)]
    cells = [np.concatenate([rng.permutation(programs[i % 3]), rng.choice(np.arange(34, V), 8, replace=False)])
             for i in range(60)]
    datasets.Dataset.from_dict({"cell_id": [f"c{i}" for i in range(60)], "input_ids": [c.tolist() for c in cells]}
                               ).save_to_disk(tmp_path / "cells.dataset")
    names = ["<pad>", "<mask>", "<cls>", "<eos>"] + [f"ENSG{i:011d}" for i in range(4, V)]
    pd.DataFrame({"token": names, "token_id": range(V)}).to_csv(tmp_path / "tokens.tsv", sep="\t", index=False)
    (tmp_path / "sets.gmt").write_text("".join(
        f"program_{k}\tsimulated\t" + "\t".join(names[token] for token in program) + "\n"
        for k, program in enumerate(programs)))
    return tmp_path


def test_albert_pretrained_with_pathway_masking_loads_through_hugging_face_and_the_workflow(corpus):
    model = {**MODEL, "architecture": "albert", "embedding_size": 8, "share_layers": True}
    masking = {**CONFIG["pretraining"]["masking"], "strategy": "pathway", "schedule": "linear"}
    pretraining = {**CONFIG["pretraining"], "epochs": 2, "batch_size": 16, "warmup_steps": 2, "masking": masking}
    out = corpus / "albert"
    tokenizer = TokenizerSettings(**{**CONFIG["tokenizer"], "model_input_size": P})
    settings = PretrainingSettings.from_config(pretraining)
    pretrain_model(corpus / "cells.dataset", corpus / "tokens.tsv", ModelSettings.from_config(model), settings,
                   tokenizer, settings.masking, 0, 1, out, gene_sets_gmt=str(corpus / "sets.gmt"))
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["architecture"] == "albert" and summary["masking"]["strategy"] == "pathway"
    assert summary["parameters"] == albert_mlm_parameters(V, P, 8, 16, 1, 32)
    assert np.isfinite(summary["heldout_mlm_loss"]) and summary["pretrain_seconds"] > 0

    base = AutoModel.from_pretrained(out)  # standard Hugging Face tooling
    assert type(base).__name__ == "AlbertModel" and base.config.num_hidden_groups == 1
    cells = classifier(out, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    assert type(cells).__name__ == "AlbertForSequenceClassification"
    assert torch.equal(cells.albert.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)
    genes = classifier(out, "token", 3, {0: "a", 1: "b", 2: "c"}, "random", seed=0)
    assert type(genes).__name__ == "AlbertForTokenClassification"
    loaded = load_encoder_model(out, "pretrained", seed=0).eval()
    input_ids = torch.tensor([[4, 5, 6, 40], [14, 15, 0, 0]])
    states = encoder(loaded)(input_ids=input_ids, attention_mask=(input_ids != 0).long(), output_hidden_states=True)
    assert len(states.hidden_states) == 4 and states.hidden_states[-2].shape == (2, 4, 16)  # 3 layers + input


def test_freezing_albert_layers_and_embeddings(corpus):
    unshared = corpus / "unshared"
    new_masked_lm(geneformer_config({**MODEL, "architecture": "albert", "embedding_size": 8}, V, P), 0
                  ).save_pretrained(unshared)
    model = classifier(unshared, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    freeze(model, 2, embeddings=True)
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    assert any(".albert_layer_groups.1." in name for name in frozen)
    assert not any(".albert_layer_groups.2." in name for name in frozen)
    assert "albert.encoder.embedding_hidden_mapping_in.weight" in frozen  # the factorization's projection
    assert "albert.embeddings.word_embeddings.weight" in frozen and "classifier.weight" not in frozen

    shared = corpus / "shared"
    new_masked_lm(geneformer_config({**MODEL, "architecture": "albert", "share_layers": True}, V, P), 0
                  ).save_pretrained(shared)
    model = classifier(shared, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    with pytest.raises(InputError, match="share"):
        freeze(model, 1, embeddings=False)
    freeze(model, 0, embeddings=True)
    assert all(parameter.requires_grad for parameter in model.albert.encoder.albert_layer_groups.parameters())


def test_ablation_variants_merge_the_budget_and_are_checked():
    factorized = variant_settings(CONFIG, "factorized")
    assert factorized["model"]["architecture"] == "albert" and factorized["model"]["embedding_size"] == 16
    assert factorized["pretraining"]["epochs"] == CONFIG["ablation"]["pretraining"]["epochs"]
    assert variant_settings(CONFIG, "masking_80_2_18")["pretraining"]["masking"]["random_token_fraction"] == 0.02
    bad = {**CONFIG, "ablation": {**CONFIG["ablation"], "variants": {"x": {"model": {"share_layers": True}}}}}
    with pytest.raises(InputError, match="ALBERT options"):
        variant_settings(bad, "x")
    typo = {**CONFIG, "ablation": {**CONFIG["ablation"], "variants": {"x": {"pretraining": {"epoch": 2}}}}}
    with pytest.raises(InputError, match="ablation.variants.x.pretraining"):
        variant_settings(typo, "x")
    variants = {name: variant_settings(CONFIG, name) for name in CONFIG["ablation"]["variants"]}
    assert downstream_finetuning(CONFIG, variants)["loss"] == "focal"  # the pancreas enhanced recipe
    frozen = {**CONFIG, "ablation": {**CONFIG["ablation"], "downstream": {
        **CONFIG["ablation"]["downstream"], "finetuning": {"freeze_layers": 2}}}}
    with pytest.raises(InputError, match="share one set of layer weights"):
        downstream_finetuning(frozen, variants)


def test_ablation_table_and_figure(tmp_path):
    variants = []
    for name, model_config, parameters in [
        ("baseline", {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 6}, 200_000),
        ("shared", {"model_type": "albert", "hidden_size": 64, "embedding_size": 16, "num_hidden_layers": 6,
                    "num_hidden_groups": 1}, 60_000)]:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(model_config))
        (directory / SUMMARY_FILE).write_text(json.dumps({
            "architecture": model_config["model_type"], "parameters": parameters, "encoder_parameters": parameters - 1,
            "heldout_mlm_loss": 5.5, "pretrain_seconds": 12.5, "steps": 100,
            "masking": {**CONFIG["pretraining"]["masking"], "random_token_fraction": 0.02}}))
        variants.append([name, str(directory)])
    pd.DataFrame({"method": ["baseline", "shared"], "macro_f1_mean": [0.8, 0.7], "macro_f1_sd": [0.01, 0.02],
                  "accuracy_mean": [0.9, 0.85], "n_folds": [3, 3]}).to_csv(tmp_path / "summary.csv", index=False)
    collect_ablation(variants, tmp_path / "summary.csv", "pancreas", tmp_path / "table.csv", tmp_path / "table.png")
    table = pd.read_csv(tmp_path / "table.csv")
    assert list(table["variant"]) == ["baseline", "shared"]
    assert {"architecture", "parameters", "heldout_mlm_loss", "pretrain_seconds", "pancreas_macro_f1_mean",
            "pancreas_macro_f1_sd", "n_folds"} <= set(table.columns)
    assert list(table["shared_layers"]) == [False, True] and list(table["embedding_size"]) == [64, 16]
    assert table.loc[0, "masking"] == "random 15% (80/2/18)"
    assert (tmp_path / "table.png").stat().st_size > 10_000
    with pytest.raises(InputError, match="no scores for variant 'other'"):
        collect_ablation([["other", str(tmp_path / "shared")]], tmp_path / "summary.csv", "pancreas",
                         tmp_path / "t.csv", tmp_path / "t.png")


def test_dry_run_plans_every_variant_pretraining(workdir):
    result = snakemake(workdir, "-n", "pretraining_ablation", "--cores", "2", "--configfile", "config/test.yaml")
    assert result.returncode == 0, result.stderr
    variants = CONFIG["ablation"]["variants"]
    for name in variants:
        assert f"results/ablation/{name}/pretrained_model" in result.stdout, name
    counts = dict(line.split()[:2] for line in result.stdout.splitlines() if line.startswith("ablation_"))
    folds = preset_config()["ablation"]["downstream"]["n_folds"]
    assert counts == {"ablation_pretrain": str(len(variants)), "ablation_finetune_fold": str(len(variants) * folds),
                      "ablation_summary": "1"}
    assert "simulate_gene_sets" in result.stdout  # the pathway variant's gene programs
