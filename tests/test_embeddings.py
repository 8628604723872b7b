"""Cell and gene embeddings from a tiny BERT on a really tokenized dataset (V1: mean of gene states;
V2: the <cls> state), the PCA baseline on the same cells, and the scores and UMAPs that compare them."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import write_counts_h5ad

from workflow_scripts.core.batching import load_tokenized
from workflow_scripts.core.dictionaries import (
    CLS_TOKEN,
    EOS_TOKEN,
    load_token_dictionary,
)
from workflow_scripts.core.encoder import (
    cell_embeddings,
    encoder,
    load_encoder_model,
    token_states,
)
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.model import classifier, geneformer_config, new_masked_lm
from workflow_scripts.core.sections import ChecksSettings, TokenizerSettings
from workflow_scripts.embeddings.embedding import bf16_to_float32, extract_embeddings
from workflow_scripts.embeddings.scoring import (
    EMBEDDING_KEY,
    embedding_scores,
    pca_embedding,
    score_embeddings,
    write_embedding_h5ad,
)
from workflow_scripts.embeddings.settings import EmbeddingSettings
from workflow_scripts.reference.medians import build_reference, compute_gene_medians
from workflow_scripts.reference.settings import ReferenceSettings
from workflow_scripts.tokenization.tokenizer import tokenize_dataset

MODEL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, hidden_act="relu",
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2,
             layer_norm_eps=1e-12)
N_CELLS, N_GENES, INPUT_SIZE = 60, 120, 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, v1_gene_ids):
    """A labelled count file (three cell types with marker genes, two batches), tokenized in V1 and V2
    mode with the workflow's own steps, and an untrained masked LM for each token dictionary."""
    directory = tmp_path_factory.mktemp("embeddings")
    rng = np.random.default_rng(0)
    cell_types = np.repeat(["a", "b", "c"], N_CELLS // 3)
    rates = np.tile(rng.gamma(0.3, 0.5, size=N_GENES), (N_CELLS, 1))  # sparse: cells of many lengths
    for index, cell_type in enumerate(["a", "b", "c"]):
        rates[cell_types == cell_type, index * 10:(index + 1) * 10] += 8.0
    obs = pd.DataFrame({"cell_type": cell_types, "batch": np.tile(["b1", "b2"], N_CELLS // 2)},
                       index=[f"cell_{i:03d}" for i in range(N_CELLS)])
    h5ad = write_counts_h5ad(directory / "counts.h5ad", sp.csr_matrix(rng.poisson(rates).astype(np.int32)),
                             v1_gene_ids[:N_GENES], obs)
    compute_gene_medians(h5ad, directory / "medians.tsv", TokenizerSettings(model_input_size=INPUT_SIZE, special_tokens=False, chunk_size=100))
    paths = {"h5ad": h5ad}
    for mode, special in [("v1", False), ("v2", True)]:
        tokens_tsv, used = directory / f"tokens_{mode}.tsv", directory / f"used_{mode}.tsv"
        tokenizer = TokenizerSettings(model_input_size=INPUT_SIZE, special_tokens=special, chunk_size=25)
        build_reference(ReferenceSettings(medians="corpus", token_dictionary="corpus"), tokenizer, directory / "medians.tsv", tokens_tsv, used)
        tokenize_dataset(h5ad, tokens_tsv, used, directory / f"{mode}.dataset", tokenizer, ChecksSettings(min_genes_in_vocabulary=10, min_genes_per_class=10, min_count_share_in_vocabulary=0.5),
                         ["cell_type", "batch"])
        vocab_size = len(load_token_dictionary(str(tokens_tsv)))
        new_masked_lm(geneformer_config(MODEL, vocab_size, INPUT_SIZE), seed=0).save_pretrained(directory / mode)
        paths.update({f"{mode}_tokens": tokens_tsv, f"{mode}_dataset": directory / f"{mode}.dataset",
                      f"{mode}_model": directory / mode})
    return paths


def embedding_settings(**changes) -> EmbeddingSettings:
    """An embeddings section as the schema fills it (batches of 7 cells: several padded batches)."""
    return EmbeddingSettings.from_config({
        "dataset": "counts", "label_column": "cell_type", "batch_column": "batch", "finetuned": None,
        "max_cells": None, "layer": -2, "dtype": "fp32", "batch_size": 7, "pca_components": 10, **changes})


def extract(corpus, out, mode="v1", checkpoint=None, init="pretrained", seed=0, **changes):
    """Run extract_embeddings into `out` (settings changed by `changes`) and return (npy array, h5ad, gene npz)."""
    extract_embeddings(checkpoint or corpus[f"{mode}_model"], corpus[f"{mode}_dataset"], corpus[f"{mode}_tokens"],
                       init, embedding_settings(**changes), seed, out / "cells.npy", out / "genes.npz",
                       out / "cells.h5ad")
    return np.load(out / "cells.npy"), ad.read_h5ad(out / "cells.h5ad"), np.load(out / "genes.npz")


def states_one_by_one(corpus, mode: str, layer: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(token ids, hidden states at `layer`) of every cell run alone, without any padding."""
    model = load_encoder_model(corpus[f"{mode}_model"], "pretrained", 0).eval()
    tokens, _ = load_tokenized(corpus[f"{mode}_dataset"])
    cells = []
    with torch.no_grad():
        for row in range(len(tokens)):
            ids = torch.from_numpy(tokens.values[tokens.offsets[row]:tokens.offsets[row + 1]])[None]
            states = encoder(model)(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
            cells.append((ids[0].numpy(), states.numpy()))
    return cells


def test_mean_pooling_ignores_padding(corpus):
    model = load_encoder_model(corpus["v1_model"], "pretrained", 0).eval()
    tokens, _ = load_tokenized(corpus["v1_dataset"])
    assert np.unique(tokens.lengths).size > 3  # the batched tests below pad too
    shortest = int(np.argmin(tokens.lengths))
    input_ids, attention_mask = tokens.padded(np.array([shortest]))
    extra = INPUT_SIZE - input_ids.shape[1]
    assert extra > 0
    padded_ids = torch.nn.functional.pad(input_ids, (0, extra))
    padded_mask = torch.nn.functional.pad(attention_mask, (0, extra))
    alone = cell_embeddings(token_states(model, input_ids, attention_mask), attention_mask, cls_first=False)
    padded = cell_embeddings(token_states(model, padded_ids, padded_mask), padded_mask, cls_first=False)
    assert torch.allclose(alone, padded, atol=1e-5)


def test_cell_embeddings_are_the_mean_state_at_the_asked_layer(corpus, tmp_path):
    """Length-sorted padded batches scatter back to dataset order; layer -1 is not layer -2."""
    by_hand = {layer: np.stack([states.mean(axis=0) for _, states in states_one_by_one(corpus, "v1", layer)])
               for layer in (-1, -2)}
    last, adata, _ = extract(corpus, tmp_path, layer=-1)
    second_to_last, _, _ = extract(corpus, tmp_path, layer=-2)
    np.testing.assert_allclose(last, by_hand[-1], atol=1e-5)
    np.testing.assert_allclose(second_to_last, by_hand[-2], atol=1e-5)
    assert not np.allclose(last, second_to_last, atol=1e-3)
    assert adata.uns["cell_embedding"] == "mean" and adata.uns["hidden_states_index"] == MODEL["num_hidden_layers"]


def test_v2_cell_embedding_is_the_cls_state(corpus, tmp_path):
    cells, adata, genes = extract(corpus, tmp_path, mode="v2")
    by_hand = states_one_by_one(corpus, "v2", -2)
    tokens = load_token_dictionary(str(corpus["v2_tokens"]))
    assert all(ids[0] == tokens[CLS_TOKEN] for ids, _ in by_hand)
    np.testing.assert_allclose(cells, np.stack([states[0] for _, states in by_hand]), atol=1e-5)
    assert adata.uns["cell_embedding"] == "cls"
    assert not {tokens[CLS_TOKEN], tokens[EOS_TOKEN]} & set(genes["token_ids"].tolist())  # genes only


def test_gene_embedding_is_the_mean_of_the_genes_states(corpus, tmp_path):
    _, _, genes = extract(corpus, tmp_path, layer=-1)
    by_hand = states_one_by_one(corpus, "v1", -1)
    all_ids = np.concatenate([ids for ids, _ in by_hand])
    all_states = np.concatenate([states for _, states in by_hand])
    assert genes["token_ids"].tolist() == np.unique(all_ids).tolist()
    for position in [0, len(genes["token_ids"]) // 2, -1]:
        token_id = genes["token_ids"][position]
        at_token = all_ids == token_id
        assert genes["n_occurrences"][position] == at_token.sum()
        np.testing.assert_allclose(genes["embeddings"][position], all_states[at_token].mean(axis=0), atol=1e-5)
    names = {token_id: name for name, token_id in load_token_dictionary(str(corpus["v1_tokens"])).items()}
    assert genes["ensembl_ids"][0] == names[genes["token_ids"][0]]


def test_npy_dtype_sample_order_and_h5ad_layout(corpus, tmp_path):
    full, _, _ = extract(corpus, tmp_path / "full")
    half, _, _ = extract(corpus, tmp_path / "half", dtype="fp16")
    bf16, adata, _ = extract(corpus, tmp_path / "bf16", dtype="bf16", max_cells=25, seed=3)
    assert full.dtype == np.float32 and half.dtype == np.float16 and bf16.dtype == np.uint16
    np.testing.assert_allclose(half, full, rtol=2e-3, atol=2e-3)
    rows = np.flatnonzero(np.isin([f"cell_{i:03d}" for i in range(N_CELLS)], adata.obs_names))
    assert len(rows) == 25 and adata.obs_names.tolist() == [f"cell_{i:03d}" for i in rows]  # dataset order
    np.testing.assert_allclose(bf16_to_float32(bf16), full[rows], rtol=1e-2, atol=1e-2)
    assert adata.obsm[EMBEDDING_KEY].shape == (25, MODEL["hidden_size"])
    assert adata.obsm[EMBEDDING_KEY].dtype == np.float32
    np.testing.assert_allclose(adata.obsm[EMBEDDING_KEY], full[rows], atol=1e-6)
    assert adata.obs["cell_type"].tolist() == np.repeat(["a", "b", "c"], N_CELLS // 3)[rows].tolist()
    assert adata.uns["layer"] == -2 and adata.uns["init"] == "pretrained"


def test_classifier_checkpoint_and_random_control(corpus, tmp_path):
    """A classifier built from the masked LM embeds alike (same encoder); init random differs, reproducibly."""
    classifier(corpus["v1_model"], "sequence", 3, dict(enumerate("abc")), "pretrained", 0).save_pretrained(
        tmp_path / "classifier")
    masked_lm, _, _ = extract(corpus, tmp_path / "lm")
    from_classifier, _, _ = extract(corpus, tmp_path / "cls", checkpoint=tmp_path / "classifier")
    random_a, adata, _ = extract(corpus, tmp_path / "ra", init="random", seed=5)
    random_b, _, _ = extract(corpus, tmp_path / "rb", init="random", seed=5)
    np.testing.assert_allclose(from_classifier, masked_lm, atol=1e-5)
    assert not np.allclose(random_a, masked_lm, atol=1e-3)
    np.testing.assert_array_equal(random_a, random_b)
    assert adata.uns["init"] == "random"


@pytest.mark.parametrize("layer", [3, -4])
def test_layer_outside_the_model_is_refused(corpus, tmp_path, layer):
    with pytest.raises(InputError, match=r"-3\.\.2"):
        extract(corpus, tmp_path, layer=layer)
    assert not list(tmp_path.iterdir())


def test_missing_obs_column_is_refused(corpus, tmp_path):
    with pytest.raises(InputError, match="donor"):
        extract(corpus, tmp_path, batch_column="donor")


def clusters(separated: bool, batch_apart: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three label clusters (far apart, or labels shuffled) and two batches (mixed, or shifted apart)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["x", "y", "z"], 40)
    batches = np.tile(["b1", "b2"], 60)
    matrix = rng.normal(size=(120, 8)) + 10 * (labels[:, None] == np.array(["x", "y", "z", "x", "y", "z", "x", "y"]))
    matrix[:, 7] += 20 * (batches == "b2") * batch_apart
    return matrix, labels if separated else rng.permutation(labels), batches


def test_scores_reward_separated_labels_and_mixed_batches():
    separated = embedding_scores(*clusters(separated=True, batch_apart=False), seed=0)
    shuffled = embedding_scores(*clusters(separated=False, batch_apart=False), seed=0)
    batch_apart = embedding_scores(*clusters(separated=True, batch_apart=True), seed=0)
    assert separated["label_silhouette"] > 0.5 > shuffled["label_silhouette"]
    assert separated["knn_accuracy"] > 0.95 and shuffled["knn_accuracy"] < 0.6
    assert separated["batch_asw"] > 0.9 > batch_apart["batch_asw"]
    assert separated["knn_batch_mixing"] > 0.8 and batch_apart["knn_batch_mixing"] < 0.1
    no_batches = embedding_scores(*clusters(True, False)[:2], None, seed=0)
    assert np.isnan(no_batches["batch_asw"]) and no_batches["knn_accuracy"] == separated["knn_accuracy"]


def test_pca_baseline_and_scoring_end_to_end(corpus, tmp_path):
    """PCA on the sampled cells in their order; both embeddings scored in one CSV with a UMAP grid PNG."""
    _, geneformer, _ = extract(corpus, tmp_path, max_cells=45)
    pca_embedding(corpus["h5ad"], tmp_path / "cells.h5ad", embedding_settings(), 0, tmp_path / "pca.h5ad")
    pca = ad.read_h5ad(tmp_path / "pca.h5ad")
    assert pca.obs_names.tolist() == geneformer.obs_names.tolist()
    assert pca.obsm[EMBEDDING_KEY].shape == (45, 10) and pca.uns["method"] == "pca"
    score_embeddings([["geneformer", str(tmp_path / "cells.h5ad")], ["pca", str(tmp_path / "pca.h5ad")]],
                     embedding_settings(), 0, tmp_path / "scores.csv", tmp_path / "umap.png")
    scores = pd.read_csv(tmp_path / "scores.csv").set_index("embedding")
    assert scores.index.tolist() == ["geneformer", "pca"] and (scores["n_cells"] == 45).all()
    assert scores.loc["pca", "knn_accuracy"] > 0.9  # marker genes separate the cell types
    assert scores[["label_silhouette", "batch_asw", "knn_batch_mixing"]].notna().all().all()
    assert (tmp_path / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scoring_refuses_a_missing_label_column(tmp_path):
    matrix, labels, _ = clusters(True, False)
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(len(labels))])
    write_embedding_h5ad(obs, matrix, {"method": "test"}, tmp_path / "e.h5ad")
    with pytest.raises(InputError, match="disease"):
        score_embeddings([["e", str(tmp_path / "e.h5ad")]], embedding_settings(label_column="disease", batch_column=None),
                         0, tmp_path / "s.csv", tmp_path / "u.png")
    assert not (tmp_path / "s.csv").exists()
