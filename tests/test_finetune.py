"""Fine-tuning strategies: upsampling inside training folds only, LP-FT phases, a real fold run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEFAULT_CONFIG_PATH

from workflow_scripts.core.batching import RaggedTokens
from workflow_scripts.core.config import load_config, method_settings
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.model import (
    classifier,
    freeze,
    geneformer_config,
    new_masked_lm,
)
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.core.tasks import CellFold, ExperimentSettings
from workflow_scripts.finetune.finetuning import finetune_fold, head_only_schedule
from workflow_scripts.finetune.settings import FinetuningSettings
from workflow_scripts.preflight.folds import make_folds
from workflow_scripts.reference.medians import build_reference, compute_gene_medians
from workflow_scripts.reference.settings import ReferenceSettings
from workflow_scripts.tokenization.tokenizer import tokenize_dataset

MODEL = dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, hidden_act="relu",
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02,
             layer_norm_eps=1e-12)
SETTINGS = dict(epochs=3, batch_size=16, eval_batch_size=32, learning_rate=1e-3, lr_scheduler="linear",
                warmup_steps=2, weight_decay=0.001, max_grad_norm=1.0, freeze_layers=0, freeze_embeddings=False,
                loss="cross_entropy", focal_gamma=2.0, focal_alpha=None, upsample=False, upsample_fraction=0.5,
                head_only_epochs=0, init="pretrained", checkpoint_every_steps=0)


def test_upsampling_adds_only_training_cells_of_rare_classes():
    labels_by_row = np.array([0] * 40 + [1] * 8 + [2] * 2 + [0] * 10 + [1] * 10)
    train_rows = np.arange(50)  # rows 50.. are the held-out fold
    tokens = RaggedTokens(np.zeros(0, dtype=np.int64), np.zeros(71, dtype=np.int64))
    fold = CellFold(tokens, np.arange(70).astype(str), ["x", "y", "z"], train_rows, np.arange(50, 70),
                    labels_by_row, labels_by_row)
    upsampled = fold.upsampled(0.5, seed=0).train_rows
    assert set(upsampled) <= set(train_rows)  # nothing from the held-out fold
    counts = np.bincount(labels_by_row[upsampled])
    assert counts.tolist() == [40, 20, 20]
    assert np.array_equal(upsampled[:50], train_rows)


@pytest.fixture
def checkpoint(tmp_path):
    new_masked_lm(geneformer_config(MODEL, vocab_size=60, model_input_size=32), seed=0).save_pretrained(tmp_path)
    return tmp_path


def test_lp_ft_trains_only_the_head_then_everything(checkpoint):
    model = classifier(checkpoint, "sequence", 2, {0: "a", 1: "b"}, "pretrained", seed=0)
    freeze(model, 1, embeddings=False)
    before_epoch = head_only_schedule(model, head_only_epochs=2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def step_changes():
        snapshot = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=torch.randint(2, 60, (4, 12))).logits
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0, 1])).backward()
        optimizer.step()
        return {name for name, p in model.named_parameters() if not torch.equal(snapshot[name], p)}

    for epoch in range(2):
        before_epoch(epoch)
        changed = step_changes()
        assert changed and all(name.startswith("classifier") for name in changed)
    before_epoch(2)
    changed = step_changes()
    assert any("encoder.layer.1." in name for name in changed)
    assert any("embeddings" in name for name in changed)
    assert not any("encoder.layer.0." in name for name in changed)  # frozen by freeze_layers stays frozen


def test_finetune_fold_end_to_end(tmp_path, labelled_h5ad, checkpoint):
    """Tokenize a small labelled file, make folds, fine-tune one fold with focal loss + upsampling."""
    medians, tokens, used = tmp_path / "medians.tsv", tmp_path / "tokens.tsv", tmp_path / "used.tsv"
    tokenizer = TokenizerSettings(model_input_size=32, special_tokens=False, chunk_size=100)
    compute_gene_medians(labelled_h5ad, medians, tokenizer)
    build_reference(ReferenceSettings(medians="corpus", token_dictionary="corpus"), tokenizer, medians, tokens, used)
    vocabulary = pd.read_csv(tokens, sep="\t")
    new_masked_lm(geneformer_config(MODEL, vocab_size=len(vocabulary), model_input_size=32), 0).save_pretrained(checkpoint)
    tokenize_dataset(labelled_h5ad, tokens, used, tmp_path / "tok.dataset", tokenizer,
                     ChecksSettings(min_genes_in_vocabulary=50, min_genes_per_class=10, min_count_share_in_vocabulary=0.5), ["cell_type"])
    experiment = ExperimentSettings.from_config(dict(
        dataset="labelled", task="cell_classification", label_column="cell_type", gene_labels=None, n_cells=None,
        test_cell_fraction=0.3, min_cells_per_gene=5, n_training_cells=None, group_column=None, split="stratified", n_folds=3, subset={}))
    make_folds(experiment, 0, tmp_path / "folds.tsv", h5ad_path=labelled_h5ad)
    settings = FinetuningSettings.from_config({**SETTINGS, "epochs": 8, "learning_rate": 3e-3, "loss": "focal",
                                               "focal_alpha": "balanced", "upsample": True, "head_only_epochs": 1})
    out = tmp_path / "fold"
    finetune_fold("cell_classification", tmp_path / "tok.dataset", tmp_path / "folds.tsv", 1, checkpoint, settings, 0,
                  1, out / "predictions.tsv", out / "log.tsv", out / "model")
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    folds = pd.read_csv(tmp_path / "folds.tsv", sep="\t")
    assert set(predictions["cell_id"]) == set(folds.loc[folds["fold"] == 1, "cell_id"])
    probabilities = predictions[["prob:a", "prob:b", "prob:c"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert (predictions["true_label"] == predictions["predicted_label"]).mean() > 0.6  # learnable markers
    log = pd.read_csv(out / "log.tsv", sep="\t")
    assert log["epoch"].max() == 8 and log["loss"].notna().all()
    assert (out / "model" / "model.safetensors").exists()


def test_every_configured_method_parses_as_finetuning_settings():
    config = load_config(DEFAULT_CONFIG_PATH)
    methods = [(name, method) for name, entry in config["experiments"].items()
               for method, settings in entry["methods"].items() if settings["kind"] == "finetune"]
    assert methods
    for name, method in methods:
        merged = method_settings(config, name, method)["finetuning"]
        assert FinetuningSettings.from_config(merged).as_dict() == merged  # what training fingerprints, unchanged


def test_a_misspelt_finetuning_key_is_refused_by_name():
    with pytest.raises(InputError, match=r"--settings\.learning_rat.*not a setting of FinetuningSettings"):
        FinetuningSettings.from_json(json.dumps({**SETTINGS, "learning_rat": 1e-3}), where="--settings")
