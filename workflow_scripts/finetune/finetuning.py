"""Fine-tuning of one cross-validation fold.

Cell tasks: BertForSequenceClassification on the training folds' cells, per-cell class
probabilities on the held-out fold. Gene tasks: BertForTokenClassification with labels on the
training folds' gene tokens of the training cells, probabilities at every held-out gene's token
in the test cells (see genes.py). Both share one training recipe (`fine_tune`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..core.batching import (
    RaggedTokens,
    dataset_rows,
    inference_batches,
    load_tokenized,
)
from ..core.devices import distributed_context
from ..core.errors import InputError
from ..core.folds import class_order, read_folds
from ..core.genes import (
    IGNORE_INDEX,
    labelled_positions,
    read_cell_roles,
    rows_with_labels,
    token_label_lookup,
)
from ..core.model import autocast, classifier, freeze, pick_device
from ..core.outputs import atomic_path, predictions_table, write_tsv
from ..core.training import BatchLoss, discard_checkpoints, resume_dir_of, train
from .losses import make_loss

log = logging.getLogger(__name__)


def fine_tune(head: str, checkpoint: str | Path, classes: list[str], tokens: RaggedTokens, train_rows: np.ndarray,
              loss_of_batch: BatchLoss, settings: dict[str, Any], seed: int, device: torch.device,
              output_log: str | Path, resume_dir: str | Path | None = None) -> torch.nn.Module:
    """The shared recipe: classifier from the checkpoint (or random), layers frozen, head-only epochs;
    training checkpoints in `resume_dir` (see training.train)."""
    model = classifier(checkpoint, head, len(classes), dict(enumerate(classes)), settings["init"], seed)
    freeze(model, settings["freeze_layers"], settings["freeze_embeddings"])
    train(model, tokens, train_rows, loss_of_batch, settings, seed, device, output_log,
          before_epoch=head_only_schedule(model, settings["head_only_epochs"]), resume_dir=resume_dir)
    return model


def save_model(model: torch.nn.Module, output_model: str | Path) -> None:
    with atomic_path(output_model) as temporary:
        model.save_pretrained(temporary, safe_serialization=True)


def finetune_fold(tokenized_dir: str | Path, folds_tsv: str | Path, fold: int, checkpoint: str | Path,
                  settings: dict[str, Any], seed: int, threads: int, output_predictions: str | Path,
                  output_log: str | Path, output_model: str | Path, gpus: int | None = None) -> None:
    """Cell task: train on every fold but `fold`, predict `fold`, save the model, predictions and step log.

    `gpus`: the GPUs the job reserved (see model.pick_device). Under torchrun every process trains;
    rank 0 alone predicts and writes. Training checkpoints wait in OUTPUT_MODEL.resume until the
    outputs are written, so that a killed job resumes when rerun."""
    torch.set_num_threads(threads)
    tokens, dataset = load_tokenized(tokenized_dir)
    folds = read_folds(folds_tsv)
    classes = class_order(folds)
    rows = dataset_rows(dataset["cell_id"], folds["cell_id"], str(folds_tsv),
                        f"re-run tokenization of {tokenized_dir} for this dataset")
    label_ids = folds["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()
    labels_by_row = np.full(len(tokens), -1, dtype=np.int64)
    labels_by_row[rows] = label_ids
    train_rows = rows[folds["fold"].to_numpy() != fold]
    test_rows = rows[folds["fold"].to_numpy() == fold]
    if settings["upsample"]:
        train_rows = upsample_rare_classes(train_rows, labels_by_row, settings["upsample_fraction"], seed)

    device = pick_device(gpus)
    labels_tensor = torch.from_numpy(labels_by_row)
    loss_function = make_loss(settings, labels_by_row[train_rows], len(classes))

    def loss_of_batch(net, input_ids, attention_mask, batch_rows):
        logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
        return loss_function(logits.float(), labels_tensor[batch_rows].to(logits.device))

    with distributed_context(device) as context:
        model = fine_tune("sequence", checkpoint, classes, tokens, train_rows, loss_of_batch, settings, seed, device,
                          output_log, resume_dir_of(output_model))
    if not context.is_main:
        return
    probabilities = predict_probabilities(model, tokens, test_rows, settings["eval_batch_size"], device)
    ids = {"cell_id": np.asarray(dataset["cell_id"])[test_rows]}
    true_labels = np.asarray(classes, dtype=object)[labels_by_row[test_rows]]
    write_tsv(predictions_table(ids, true_labels, classes, probabilities), output_predictions,
              float_format="%.6g")
    save_model(model, output_model)
    discard_checkpoints(resume_dir_of(output_model))


def finetune_gene_fold(tokenized_dir: str | Path, folds_tsv: str | Path, cells_tsv: str | Path, fold: int,
                       checkpoint: str | Path, settings: dict[str, Any], seed: int, threads: int,
                       output_predictions: str | Path, output_log: str | Path, output_model: str | Path,
                       gpus: int | None = None) -> None:
    """Gene task: label the training genes' tokens in the training cells, train a token classifier,
    and predict every held-out gene's token in the test cells (one predictions.tsv row per token).
    `gpus` and several processes as in finetune_fold."""
    if settings["upsample"]:
        raise InputError("finetuning.upsample", "is not defined for gene classification (it resamples cells)",
                         "set upsample: false; use focal_alpha: balanced to weight rare gene classes")
    torch.set_num_threads(threads)
    tokens, dataset = load_tokenized(tokenized_dir)
    genes = read_folds(folds_tsv, id_column="ensembl_id")
    classes = class_order(genes)
    label_ids = genes["label"].map({name: i for i, name in enumerate(classes)}).to_numpy()
    token_ids = genes["token_id"].to_numpy(dtype=np.int64)
    in_training = genes["fold"].to_numpy() != fold
    device = pick_device(gpus)
    vocab_size = classifier_vocab_size(checkpoint, token_ids)
    train_lookup = token_label_lookup(token_ids[in_training], label_ids[in_training], vocab_size)
    test_lookup = token_label_lookup(token_ids[~in_training], label_ids[~in_training], vocab_size)
    roles = read_cell_roles(cells_tsv, np.asarray(dataset["cell_id"]))
    train_rows = rows_with_labels(tokens, roles["train"], train_lookup)
    test_rows = rows_with_labels(tokens, roles["test"], test_lookup)
    _, train_token_ids = labelled_positions(tokens, train_rows, train_lookup)
    loss_function = make_loss(settings, train_lookup[train_token_ids], len(classes))
    lookup_tensor = torch.from_numpy(train_lookup)

    def loss_of_batch(net, input_ids, attention_mask, batch_rows):
        logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
        labels = lookup_tensor.to(logits.device)[input_ids]
        labelled = labels != IGNORE_INDEX
        return loss_function(logits[labelled].float(), labels[labelled])

    log.info("fold %d: %d training genes in %d training cells, %d held-out genes in %d test cells", fold,
             int(in_training.sum()), len(train_rows), int((~in_training).sum()), len(test_rows))
    with distributed_context(device) as context:
        model = fine_tune("token", checkpoint, classes, tokens, train_rows, loss_of_batch, settings, seed, device,
                          output_log, resume_dir_of(output_model))
    if not context.is_main:
        return
    rows, predicted_tokens, probabilities = predict_token_probabilities(
        model, tokens, test_rows, test_lookup, settings["eval_batch_size"], device
    )
    gene_of_token = pd.Series(genes["ensembl_id"].to_numpy(), index=token_ids)
    ids = {"cell_id": np.asarray(dataset["cell_id"])[rows], "ensembl_id": gene_of_token.loc[predicted_tokens].to_numpy()}
    true_labels = np.asarray(classes, dtype=object)[test_lookup[predicted_tokens]]
    write_tsv(predictions_table(ids, true_labels, classes, probabilities), output_predictions,
              float_format="%.6g")
    save_model(model, output_model)
    discard_checkpoints(resume_dir_of(output_model))


def classifier_vocab_size(checkpoint: str | Path, token_ids: np.ndarray) -> int:
    """The checkpoint's vocabulary size, checked to cover the labelled genes' token ids."""
    from transformers import AutoConfig

    vocab_size = AutoConfig.from_pretrained(checkpoint).vocab_size
    if len(token_ids) and token_ids.max() >= vocab_size:
        raise InputError(str(checkpoint), f"vocabulary of {vocab_size} tokens lacks token id {int(token_ids.max())}",
                         "use the token dictionary the checkpoint was trained with")
    return vocab_size


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


@torch.no_grad()
def predict_token_probabilities(model: torch.nn.Module, tokens: RaggedTokens, rows: np.ndarray, lookup: np.ndarray,
                                batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, token id, softmax probabilities) at every labelled position of `rows`, batch by batch."""
    model.eval()
    model.to(device)
    out_rows, out_tokens = [np.array([], dtype=np.int64)], [np.array([], dtype=np.int64)]
    out_probabilities = [np.zeros((0, model.config.num_labels))]
    for batch in inference_batches(tokens.lengths[rows], batch_size):
        input_ids, attention_mask = tokens.padded(rows[batch])
        labelled = lookup[input_ids.numpy()] != IGNORE_INDEX
        with autocast(device):
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        selected = logits.float()[torch.from_numpy(labelled).to(device)]
        out_probabilities.append(torch.softmax(selected, dim=-1).cpu().numpy())
        out_rows.append(rows[batch][np.nonzero(labelled)[0]])
        out_tokens.append(input_ids.numpy()[labelled])
    return np.concatenate(out_rows), np.concatenate(out_tokens), np.concatenate(out_probabilities)
