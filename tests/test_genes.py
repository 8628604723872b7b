"""Gene classification: label files, folds over genes, held-out cells, token labels, one fold end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.baselines.classifiers import (
    gene_expression_statistics,
    run_baseline,
)
from workflow_scripts.baselines.settings import BaselineSettings
from workflow_scripts.core.batching import RaggedTokens
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.genes import (
    IGNORE_INDEX,
    labelled_positions,
    labels_in_vocabulary,
    read_gene_labels,
    rows_with_labels,
    split_cells,
    token_label_lookup,
)
from workflow_scripts.core.model import geneformer_config, new_masked_lm
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.core.tasks import ExperimentSettings, GeneTask
from workflow_scripts.finetune.finetuning import finetune_fold
from workflow_scripts.finetune.settings import FinetuningSettings
from workflow_scripts.preflight.checks import check_experiment
from workflow_scripts.preflight.folds import make_folds
from workflow_scripts.reference.medians import build_reference, compute_gene_medians
from workflow_scripts.reference.settings import ReferenceSettings
from workflow_scripts.tokenization.tokenizer import tokenize_dataset

MODEL = dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, hidden_act="relu",
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02, layer_norm_eps=1e-12)
SETTINGS = dict(epochs=2, batch_size=16, eval_batch_size=32, learning_rate=1e-3, lr_scheduler="linear",
                warmup_steps=2, weight_decay=0.001, max_grad_norm=1.0, freeze_layers=2, freeze_embeddings=False,
                loss="focal", focal_gamma=2.0, focal_alpha="balanced", upsample=False, upsample_fraction=0.5,
                head_only_epochs=0, init="pretrained", checkpoint_every_steps=0)
GENE_EXPERIMENT = dict(dataset="labelled", task="gene_classification", label_column=None, gene_labels="labels.tsv",
                       n_cells=None, test_cell_fraction=0.3, min_cells_per_gene=2, n_training_cells=None,
                       group_column=None,
                       split="stratified", n_folds=3, subset={})


def make_gene_folds(gene_task: dict, **changes) -> None:
    """Gene folds of the fixture (3 folds, 30 % test cells, genes in at least 2 cells of each role,
    at least 3 genes per class), written to its directory."""
    directory = gene_task["dir"]
    make_folds(ExperimentSettings.from_config({**GENE_EXPERIMENT, **changes}), 0, directory / "folds.tsv",
               gene_labels_tsv=gene_task["labels"], tokenized_dir=gene_task["tokenized"],
               token_dictionary_tsv=gene_task["tokens"], min_genes_per_class=3,
               output_cells_tsv=directory / "cells.tsv")


def ragged(cells: list[list[int]]) -> RaggedTokens:
    offsets = np.concatenate([[0], np.cumsum([len(cell) for cell in cells])]).astype(np.int64)
    return RaggedTokens(np.concatenate([np.asarray(cell, dtype=np.int64) for cell in cells]), offsets)


def test_token_labels_sit_exactly_on_the_target_genes_positions():
    tokens = ragged([[5, 9, 2, 7], [9, 3], [4, 8, 6]])
    lookup = token_label_lookup(np.array([9, 7, 6]), np.array([1, 0, 1]), vocab_size=12)
    input_ids, attention_mask = tokens.padded(np.arange(3))
    labels = lookup[input_ids.numpy()]
    expected = np.array([[IGNORE_INDEX, 1, IGNORE_INDEX, 0],
                         [1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],  # padding (token 0) is never labelled
                         [IGNORE_INDEX, IGNORE_INDEX, 1, IGNORE_INDEX]])
    np.testing.assert_array_equal(labels, expected)
    assert (labels[attention_mask.numpy() == 0] == IGNORE_INDEX).all()
    rows, token_ids = labelled_positions(tokens, np.array([2, 0]), lookup)
    np.testing.assert_array_equal(rows, [2, 0, 0])
    np.testing.assert_array_equal(token_ids, [6, 9, 7])
    np.testing.assert_array_equal(rows_with_labels(tokens, np.arange(3), token_label_lookup(np.array([3]), np.array([0]), 12)), [1])


def write_labels(path, rows, header="ensembl_id\tlabel"):
    path.write_text(header + "\n" + "".join(f"{gene}\t{label}\n" for gene, label in rows))
    return path


@pytest.mark.parametrize(("content", "message"), [
    ("gene\tclass\nENSG1\ta\n", "lacks columns"),
    ("ensembl_id\tlabel\nENSG1\ta\nENSG1\tb\nENSG2\tb\n", "more than once"),
    ("ensembl_id\tlabel\nENSG1\ta\nENSG2\ta\n", "1 class"),
    ("ensembl_id\tlabel\nENSG1\t\nENSG2\tb\n", "empty"),
    ("", "cannot be read"),
])
def test_bad_gene_label_files_are_refused(tmp_path, content, message):
    path = tmp_path / "labels.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_gene_labels(path)


def test_genes_outside_the_vocabulary_are_counted_and_too_few_stop(tmp_path):
    tokens = {"<pad>": 0, "<mask>": 1, **{f"ENSG{i}": i + 2 for i in range(6)}}
    rows = [(f"ENSG{i}", "a") for i in range(3)] + [(f"ENSG{i}", "b") for i in range(3, 6)] + [("ENSG99", "b")]
    labels = read_gene_labels(write_labels(tmp_path / "labels.tsv", rows))
    kept, n_absent = labels_in_vocabulary(labels, tokens, "labels.tsv", minimum=3)
    assert n_absent == 1 and len(kept) == 6
    with pytest.raises(InputError, match=r"1 of 7 labelled genes are not in the token dictionary.*a \(3 genes\)"):
        labels_in_vocabulary(labels, tokens, "labels.tsv", minimum=4)


def test_cell_split_is_disjoint_and_seeded():
    train, test = split_cells(100, 60, 0.25, seed=3)
    assert len(train) == 45 and len(test) == 15 and not set(train) & set(test)
    again = split_cells(100, 60, 0.25, seed=3)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    with pytest.raises(InputError, match="test_cell_fraction"):
        split_cells(3, None, 0.1, seed=0)


def test_gene_expression_statistics_by_hand():
    profiles = np.array([[0.0, 2.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    features = gene_expression_statistics(profiles)
    np.testing.assert_allclose(features[0], [np.log1p(1.5), np.log1p(2.75 / 2.25), 0.5, np.log1p(3.0)])
    np.testing.assert_allclose(features[1], [np.log1p(1.0), 0.0, 1.0, np.log1p(1.0)])


@pytest.fixture
def gene_task(tmp_path, labelled_h5ad):
    """The labelled fixture tokenized, its 60 marker genes labelled by cell type (a: marker of a or b, ...)."""
    medians, tokens, used = tmp_path / "medians.tsv", tmp_path / "tokens.tsv", tmp_path / "used.tsv"
    tokenizer = TokenizerSettings(model_input_size=32, special_tokens=False, chunk_size=100)
    compute_gene_medians(labelled_h5ad, medians, tokenizer)
    build_reference(ReferenceSettings(medians="corpus", token_dictionary="corpus"), tokenizer, medians, tokens, used)
    tokenize_dataset(labelled_h5ad, tokens, used, tmp_path / "tok.dataset", tokenizer, ChecksSettings(min_genes_in_vocabulary=50, min_genes_per_class=10, min_count_share_in_vocabulary=0.5), [])
    vocabulary = pd.read_csv(tokens, sep="\t")
    genes = vocabulary["token"][vocabulary["token"].str.startswith("ENSG")].tolist()
    rows = [(gene, "marker" if index < 40 else "other") for index, gene in enumerate(genes[:80])] + [("ENSG_NOT_REAL", "other")]
    labels = write_labels(tmp_path / "labels.tsv", rows)
    checkpoint = tmp_path / "checkpoint"
    new_masked_lm(geneformer_config(MODEL, vocab_size=len(vocabulary), model_input_size=32), 0).save_pretrained(checkpoint)
    return {"dir": tmp_path, "labels": labels, "tokens": tokens, "used": used, "tokenized": tmp_path / "tok.dataset",
            "checkpoint": checkpoint, "h5ad": labelled_h5ad}


def test_gene_folds_split_genes_and_cells(gene_task):
    directory = gene_task["dir"]
    make_gene_folds(gene_task, n_cells=200)
    folds = pd.read_csv(directory / "folds.tsv", sep="\t")
    cells = pd.read_csv(directory / "cells.tsv", sep="\t")
    assert "ENSG_NOT_REAL" not in set(folds["ensembl_id"]) and not folds["ensembl_id"].duplicated().any()
    assert (folds["n_train_cells"] >= 2).all() and (folds["n_test_cells"] >= 2).all()
    assert (folds.groupby("fold")["label"].nunique() == 2).all()  # stratified: both classes in every fold
    assert len(cells) == 200 and (cells["role"] == "test").sum() == 60 and not cells["cell_id"].duplicated().any()


def test_fewer_training_cells_keep_the_genes_folds_and_test_cells(gene_task):
    """n_training_cells: a nested seeded subset of the training cells; the kept genes, their folds and
    the test cells are those of all training cells, so every size is scored on the same genes and cells."""
    directory = gene_task["dir"]
    runs = {}
    for size in (None, 80, 30):
        make_gene_folds(gene_task, n_cells=200, n_training_cells=size)
        runs[size] = (pd.read_csv(directory / "folds.tsv", sep="\t"), pd.read_csv(directory / "cells.tsv", sep="\t"))
    key = ["ensembl_id", "label", "fold", "n_test_cells"]
    trained = {size: set(cells.loc[cells["role"] == "train", "cell_id"]) for size, (_, cells) in runs.items()}
    tested = {size: set(cells.loc[cells["role"] == "test", "cell_id"]) for size, (_, cells) in runs.items()}
    assert len(trained[None]) == 140 and len(trained[80]) == 80 and len(trained[30]) == 30
    assert trained[30] < trained[80] < trained[None] and tested[30] == tested[80] == tested[None]
    for size in (80, 30):
        pd.testing.assert_frame_equal(runs[size][0][key], runs[None][0][key])
        assert (runs[size][0]["n_train_cells"] <= runs[None][0]["n_train_cells"]).all()


def test_gene_fold_finetune_and_baseline_score_only_held_out_genes_in_test_cells(gene_task):
    directory = gene_task["dir"]
    make_gene_folds(gene_task)
    folds = pd.read_csv(directory / "folds.tsv", sep="\t")
    cells = pd.read_csv(directory / "cells.tsv", sep="\t")
    held_out = set(folds.loc[folds["fold"] == 1, "ensembl_id"])
    test_cells = set(cells.loc[cells["role"] == "test", "cell_id"])
    out = directory / "fold_1"
    finetune_fold("gene_classification", gene_task["tokenized"], directory / "folds.tsv", 1, gene_task["checkpoint"],
                  FinetuningSettings.from_config(SETTINGS), 0, 1, out / "predictions.tsv", out / "log.tsv",
                  out / "model", cells_tsv=directory / "cells.tsv")
    stats_logreg = BaselineSettings.from_config({"kind": "gene_stats_logreg", "options": {"C": 1.0, "max_iter": 500}})
    run_baseline("gene_classification", gene_task["h5ad"], directory / "folds.tsv", 1, stats_logreg, 0,
                 out / "baseline.tsv", tokenized_dir=gene_task["tokenized"], cells_tsv=directory / "cells.tsv")
    finetuned = pd.read_csv(out / "predictions.tsv", sep="\t")
    baseline = pd.read_csv(out / "baseline.tsv", sep="\t")
    for predictions in (finetuned, baseline):
        assert set(predictions["ensembl_id"]) == held_out
        assert set(predictions["cell_id"]) <= test_cells
        truth = folds.set_index("ensembl_id")["label"]
        assert (predictions["true_label"].to_numpy() == truth.loc[predictions["ensembl_id"]].to_numpy()).all()
        np.testing.assert_allclose(predictions[["prob:marker", "prob:other"]].sum(axis=1), 1, atol=1e-5)
    key = ["cell_id", "ensembl_id"]
    assert sorted(map(tuple, finetuned[key].to_numpy())) == sorted(map(tuple, baseline[key].to_numpy()))
    assert len(finetuned) == folds.loc[folds["fold"] == 1, "n_test_cells"].sum()  # every held-out token, once
    assert (out / "model" / "config.json").exists()
    assert pd.read_csv(out / "log.tsv", sep="\t")["epoch"].max() == 2


def test_a_gene_fold_needs_cells_tsv_and_cannot_be_upsampled(gene_task):
    directory = gene_task["dir"]
    make_gene_folds(gene_task)
    with pytest.raises(InputError, match="--cells-tsv.*needed by a gene_classification task"):
        GeneTask().fold(gene_task["tokenized"], directory / "folds.tsv", 0, None)
    fold = GeneTask().fold(gene_task["tokenized"], directory / "folds.tsv", 0, directory / "cells.tsv")
    with pytest.raises(InputError, match="upsample"):
        fold.upsampled(0.5, seed=0)
    labelled = fold.train_targets[fold.tokens.subset(fold.train_rows).values]
    assert np.array_equal(fold.training_labels(), labelled[labelled != IGNORE_INDEX])


def test_gene_preflight_reports_absent_genes_and_stops_on_too_few(gene_task):
    directory = gene_task["dir"]
    experiment = {"task": "gene_classification", "n_folds": 3}
    arguments = dict(experiment_name="genes", experiment=experiment, h5ad_path=gene_task["h5ad"],
                     token_dictionary_tsv=gene_task["tokens"], medians_tsv=gene_task["used"],
                     tokenizer=TokenizerSettings(model_input_size=32, special_tokens=False, chunk_size=100),
                     gene_labels_tsv=str(gene_task["labels"]))
    check_experiment(**arguments, checks=ChecksSettings(min_genes_in_vocabulary=10, min_genes_per_class=5, min_count_share_in_vocabulary=0.5), output_json=directory / "ok.json")
    report = pd.read_json(directory / "ok.json", typ="series")
    assert report["gene_labels"]["absent_from_vocabulary"] == 1
    assert report["gene_labels"]["class_sizes"] == {"marker": 40, "other": 40}
    with pytest.raises(InputError, match="fewer than 41 genes"):
        check_experiment(**arguments, checks=ChecksSettings(min_genes_in_vocabulary=10, min_genes_per_class=41, min_count_share_in_vocabulary=0.5), output_json=directory / "bad.json")
    assert not (directory / "bad.json").exists()
