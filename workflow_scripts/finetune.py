"""Fine-tuning of one cross-validation fold: BertForSequenceClassification on the training folds,
per-cell class probabilities on the held-out fold."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .batching import RaggedTokens, inference_batches, load_tokenized
from .errors import InputError
from .folds import class_order, read_folds
from .io_utils import atomic_path, write_tsv
from .losses import make_loss
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
    if settings["upsample"]:
        train_rows = upsample_rare_classes(train_rows, labels_by_row, settings["upsample_fraction"], seed)

    device = pick_device()
    model = classifier(checkpoint, len(classes), dict(enumerate(classes)), settings["init"], seed)
    freeze(model, settings["freeze_layers"], settings["freeze_embeddings"])
    labels_tensor = torch.from_numpy(labels_by_row)
    loss_function = make_loss(settings, labels_by_row[train_rows], len(classes))

    def loss_of_batch(net, input_ids, attention_mask, batch_rows):
        logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
        return loss_function(logits.float(), labels_tensor[batch_rows].to(logits.device))

    train(model, tokens, train_rows, loss_of_batch, settings, seed, device, output_log,
          before_epoch=head_only_schedule(model, settings["head_only_epochs"]))
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


def upsample_rare_classes(train_rows: np.ndarray, labels_by_row: np.ndarray, fraction: float, seed: int
                          ) -> np.ndarray:
    """Add resampled training cells (with replacement) until each class has `fraction` x the largest."""
    labels = labels_by_row[train_rows]
    counts = np.bincount(labels)
    target = int(np.ceil(fraction * counts.max()))
    rng = np.random.default_rng(seed)
    extra = [rng.choice(train_rows[labels == label], target - count)
             for label, count in enumerate(counts) if 0 < count < target]
    return np.concatenate([train_rows, *extra])


def head_only_schedule(model: torch.nn.Module, head_only_epochs: int):
    """Before each epoch: encoder frozen while epoch < head_only_epochs (linear probing, LP-FT),
    then back to the trainable set chosen by `freeze` (so frozen layers stay frozen)."""
    encoder = list(model.base_model.parameters())
    trainable = [parameter.requires_grad for parameter in encoder]

    def before_epoch(epoch: int) -> None:
        head_only = epoch < head_only_epochs
        for parameter, was_trainable in zip(encoder, trainable):
            parameter.requires_grad = was_trainable and not head_only
        log.info("epoch %d: %s", epoch + 1, "classifier head only" if head_only else "encoder and head")

    return before_epoch


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
