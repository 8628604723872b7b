"""Quantization benchmark: int8 and half-precision variants of a fold's model, scored on its held-out fold."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEFAULT_CONFIG_PATH
from matplotlib.image import imread
from transformers import BertConfig, BertForSequenceClassification

from workflow_scripts.core.batching import load_tokenized
from workflow_scripts.core.config import load_config
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.outputs import write_tsv
from workflow_scripts.quantize.quantization import (
    benchmark_quantization,
    load_variant,
    padded_batches,
    timed_pass,
)
from workflow_scripts.quantize.settings import QuantizationSettings
from workflow_scripts.quantize.tables import COLUMNS, collect_quantization

CLASSES = ["a", "b", "c"]
VARIANTS = ["fp32", "int8_dynamic", "bf16", "fp16"]
N_CELLS, HELD_OUT_FOLD = 60, 1
SETTINGS = QuantizationSettings.from_config({"models": [{"experiment": "exp", "method": "geneformer"}],
                                             "folds": [HELD_OUT_FOLD], "variants": VARIANTS, "batch_sizes": [4, 16],
                                             "repeats": 2})


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory):
    """A tiny fine-tuned-looking model (Linear weights ~90% of it), a tokenized dataset and folds.tsv
    listing the cells in another order than the dataset."""
    directory = tmp_path_factory.mktemp("quantize")
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=32, initializer_range=0.2, num_labels=3,
                        id2label=dict(enumerate(CLASSES)), label2id={name: i for i, name in enumerate(CLASSES)})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory / "model", safe_serialization=True)
    rng = np.random.default_rng(0)
    cell_ids = [f"cell_{index:03d}" for index in range(N_CELLS)]
    labels = np.resize(CLASSES, N_CELLS)
    lengths = rng.integers(4, 33, N_CELLS)
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "length": datasets.Value("int32"), "cell_id": datasets.Value("string"),
                                  "cell_type": datasets.Value("string")})
    datasets.Dataset.from_dict(
        {"input_ids": [rng.integers(1, 50, n).tolist() for n in lengths], "length": lengths.tolist(),
         "cell_id": cell_ids, "cell_type": labels.tolist()}, features=features,
    ).save_to_disk(str(directory / "tok.dataset"))
    order = rng.permutation(N_CELLS)
    folds = pd.DataFrame({"cell_id": np.asarray(cell_ids)[order], "label": labels[order],
                          "fold": np.arange(N_CELLS) % 3})
    write_tsv(folds, directory / "folds.tsv")
    benchmark_quantization(directory / "model", directory / "tok.dataset", directory / "folds.tsv", HELD_OUT_FOLD,
                           SETTINGS, 1, directory / "quantization.tsv")
    return directory, folds


def test_every_variant_and_batch_size_scored_on_the_held_out_fold(fold_run):
    directory, folds = fold_run
    table = pd.read_csv(directory / "quantization.tsv", sep="\t")
    assert list(table.columns) == COLUMNS
    assert sorted(zip(table["variant"], table["batch_size"])) == sorted((v, b) for v in VARIANTS for b in (4, 16))
    assert (table["device"] == "cpu").all()  # no GPU here: half precision measured on the CPU, and said so
    assert (table["n_cells"] == (folds["fold"] == HELD_OUT_FOLD).sum()).all()
    assert table[["accuracy", "macro_f1", "macro_auc"]].stack().between(0, 1).all()
    assert (table[["latency_ms", "cells_per_s"]] > 0).all().all()


def test_sizes_shrink_as_expected(fold_run):
    directory, _ = fold_run
    size = pd.read_csv(directory / "quantization.tsv", sep="\t").groupby("variant")["size_mb"].first()
    assert size["int8_dynamic"] < 0.6 * size["fp32"]
    for half in ("bf16", "fp16"):
        assert size[half] == pytest.approx(size["fp32"] / 2, rel=0.05)


def test_int8_predictions_follow_fp32(fold_run):
    directory, folds = fold_run
    tokens, dataset = load_tokenized(directory / "tok.dataset")
    row_of_cell = {cell: row for row, cell in enumerate(dataset["cell_id"])}
    rows = np.array([row_of_cell[cell] for cell in folds.loc[folds["fold"] == HELD_OUT_FOLD, "cell_id"]])
    batches = padded_batches(tokens, rows, 8)
    fp32, _ = timed_pass(load_variant(directory / "model", "fp32", CLASSES), batches, len(rows), torch.device("cpu"))
    int8, _ = timed_pass(load_variant(directory / "model", "int8_dynamic", CLASSES), batches, len(rows),
                         torch.device("cpu"))
    assert type(load_variant(directory / "model", "int8_dynamic", CLASSES).classifier.weight) is not torch.Tensor
    assert np.abs(fp32 - int8).max() < 0.05
    assert (fp32.argmax(axis=1) == int8.argmax(axis=1)).mean() >= 0.9
    assert np.ptp(fp32.argmax(axis=1)) > 0  # the model is not constant, so agreement means something


def test_unknown_variant_refused_by_the_config():
    """Before any job is planned: the schema lists the variants."""
    with pytest.raises(InputError, match="'int4' is not one of"):
        load_config(DEFAULT_CONFIG_PATH, overrides={"quantization": {"variants": ["fp32", "int4"]}})


def test_model_of_other_classes_refused(fold_run, tmp_path):
    directory, _ = fold_run
    with pytest.raises(InputError, match="predicts classes"):
        load_variant(directory / "model", "fp32", ["a", "b", "x"])


def test_collect_writes_long_csv_and_figure(fold_run, tmp_path):
    directory, _ = fold_run
    tables = [["exp", "geneformer", fold, str(directory / "quantization.tsv")] for fold in (0, 1)]
    collect_quantization(json.loads(json.dumps(tables)), tmp_path / "quantization.csv", tmp_path / "quantization.png")
    table = pd.read_csv(tmp_path / "quantization.csv")
    assert list(table.columns[:3]) == ["experiment", "method", "fold"] and len(table) == 2 * len(VARIANTS) * 2
    fp32 = table[table["variant"] == "fp32"]
    assert np.allclose(fp32["size_vs_fp32"], 1) and np.allclose(fp32["latency_change_vs_fp32_pct"], 0)
    assert (table.loc[table["variant"] == "int8_dynamic", "size_vs_fp32"] < 0.6).all()
    assert imread(tmp_path / "quantization.png").shape[0] > 100
    with pytest.raises(InputError, match="twice"):
        collect_quantization(tables + tables[:1], tmp_path / "again.csv", tmp_path / "again.png")
