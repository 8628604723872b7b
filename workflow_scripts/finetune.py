"""Fine-tuning of one cross-validation fold: BertForSequenceClassification on the training folds,
per-cell class probabilities on the held-out fold."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batching import RaggedTokens, inference_batches, load_tokenized
from .errors import InputError
from .folds import class_order, read_folds
from .io_utils import atomic_path, write_tsv
from .model import autocast, classifier, freeze, pick_device
from .training import train

log = logging.getLogger(__name__)


def finetune_fold(tokenized_dir: str | Path, folds_tsv: str | Path, fold: int, checkpoint: str | Path,
                  settings: dict[str, Any], seed: int, threads: int, output_predictions: str | Path,
                  output_log: str | Path, output_model: str | Path) -> None:
    """Train on every fold but `fold`, predict `fold`, save the model, predictions and step log."""
    torch.set_num_threads(threads)
    tokens, dataset = load_tokenized(tokenized_dir)
    folds = read_folds(folds_tsv)
    classes = class_order(folds)
    row_of_cell = pd.Series(np.arange(len(tokens)), index=pd.Index(dataset["cell_id"]))
    missing = ~folds["cell_id"].isin(row_of_cell.index)
    if missing.any():
        raise InputError(str(tokenized_dir), f"{int(missing.sum())} cells of {folds_tsv} are not tokenized",
                         "re-run tokenization for this dataset")
    rows = row_of_cell.loc[folds["cell_id"]].to_numpy()
    label_ids = folds["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()
    labels_by_row = np.full(len(tokens), -1, dtype=np.int64)
    labels_by_row[rows] = label_ids
    train_rows = rows[folds["fold"].to_numpy() != fold]
    test_rows = rows[folds["fold"].to_numpy() == fold]

    device = pick_device()
    model = classifier(checkpoint, len(classes), dict(enumerate(classes)), settings["init"], seed)
    freeze(model, settings["freeze_layers"], settings["freeze_embeddings"])
    labels_tensor = torch.from_numpy(labels_by_row)

    def loss_of_batch(net, input_ids, attention_mask, batch_rows):
        logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
        return F.cross_entropy(logits.float(), labels_tensor[batch_rows].to(logits.device))

    train(model, tokens, train_rows, loss_of_batch, settings, seed, device, output_log)
    probabilities = predict_probabilities(model, tokens, test_rows, settings["eval_batch_size"], device)
    predictions = pd.DataFrame({
        "cell_id": np.asarray(dataset["cell_id"])[test_rows],
        "true_label": np.asarray(classes)[labels_by_row[test_rows]],
        "predicted_label": np.asarray(classes)[probabilities.argmax(axis=1)],
    })
    for index, name in enumerate(classes):
        predictions[f"prob:{name}"] = probabilities[:, index]
    write_tsv(predictions, output_predictions, float_format="%.6g")
    with atomic_path(output_model) as temporary:
        model.save_pretrained(temporary, safe_serialization=True)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, tokens: RaggedTokens, rows: np.ndarray, batch_size: int,
                          device: torch.device) -> np.ndarray:
    """Softmax class probabilities for `rows`, batched by length and returned in `rows` order."""
    model.eval()
    model.to(device)
    output = np.zeros((len(rows), model.config.num_labels), dtype=np.float64)
    for batch in inference_batches(tokens.lengths[rows], batch_size):
        input_ids, attention_mask = tokens.padded(rows[batch])
        with autocast(device):
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        output[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return output
