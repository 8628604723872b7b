"""Fine-tuning of one cross-validation fold, for any task (core/tasks.py).

The task gives the fold: the rows trained and tested on and their targets. Its head decides the
model: a sequence classifier (one label per cell: cell tasks) or a token classifier (labels on gene
tokens: gene tasks, see core/genes.py), each with its batch loss and its prediction here. Both share
one training recipe (`fine_tune`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..core.batching import RaggedTokens, inference_batches
from ..core.devices import distributed_context
from ..core.errors import InputError
from ..core.genes import IGNORE_INDEX
from ..core.model import autocast, classifier, freeze, pick_device
from ..core.outputs import atomic_path, write_tsv
from ..core.tasks import Fold, task_named
from ..core.training import BatchLoss, discard_checkpoints, resume_dir_of, train
from .losses import Loss, make_loss
from .settings import FinetuningSettings

log = logging.getLogger(__name__)


def fine_tune(head: str, checkpoint: str | Path, classes: list[str], tokens: RaggedTokens, train_rows: np.ndarray,
              loss_of_batch: BatchLoss, settings: FinetuningSettings, seed: int, device: torch.device,
              output_log: str | Path, resume_dir: str | Path | None = None) -> torch.nn.Module:
    """The shared recipe: classifier from the checkpoint (or random), layers frozen, head-only epochs;
    training checkpoints in `resume_dir` (see training.train)."""
    model = classifier(checkpoint, head, len(classes), dict(enumerate(classes)), settings.init, seed)
    freeze(model, settings.freeze_layers, settings.freeze_embeddings)
    # the training loop, shared with pretraining, reads (and fingerprints for resuming) plain settings
    train(model, tokens, train_rows, loss_of_batch, settings.as_dict(), seed, device, output_log,
          before_epoch=head_only_schedule(model, settings.head_only_epochs), resume_dir=resume_dir)
    return model


def save_model(model: torch.nn.Module, output_model: str | Path) -> None:
    with atomic_path(output_model) as temporary:
        model.save_pretrained(temporary, safe_serialization=True)


def finetune_fold(task: str, tokenized_dir: str | Path, folds_tsv: str | Path, fold: int, checkpoint: str | Path,
                  settings: FinetuningSettings, seed: int, threads: int, output_predictions: str | Path,
                  output_log: str | Path, output_model: str | Path, cells_tsv: str | Path | None = None,
                  gpus: int | None = None) -> None:
    """Train on every fold but `fold`, predict `fold`, save the model, predictions and step log.
    `task`: the experiment's task (core/tasks.py), which gives the fold's rows and targets and the
    head; `cells_tsv`: a gene task's cell roles (written with its folds).

    `gpus`: the GPUs the job reserved (see model.pick_device). Under torchrun every process trains;
    rank 0 alone predicts and writes. Training checkpoints wait in OUTPUT_MODEL.resume until the
    outputs are written, so that a killed job resumes when rerun."""
    torch.set_num_threads(threads)
    experiment_task = task_named(task)
    head = HEADS[experiment_task.head]
    data = experiment_task.fold(tokenized_dir, folds_tsv, fold, cells_tsv)
    check_vocabulary(checkpoint, data.tokens)
    if settings.upsample:
        data = data.upsampled(settings.upsample_fraction, seed)
    device = pick_device(gpus)
    loss_of_batch = head.loss_of_batch(data, make_loss(settings, data.training_labels(), len(data.classes)))
    with distributed_context(device) as context:
        model = fine_tune(experiment_task.head, checkpoint, data.classes, data.tokens, data.train_rows, loss_of_batch,
                          settings, seed, device, output_log, resume_dir_of(output_model))
    if not context.is_main:
        return
    rows, token_ids, probabilities = head.predict(model, data, settings.eval_batch_size, device)
    write_tsv(data.predictions(rows, token_ids, probabilities), output_predictions, float_format="%.6g")
    save_model(model, output_model)
    discard_checkpoints(resume_dir_of(output_model))


def check_vocabulary(checkpoint: str | Path, tokens: RaggedTokens) -> None:
    """The checkpoint's vocabulary must cover the dataset's token ids."""
    from transformers import AutoConfig

    vocab_size = AutoConfig.from_pretrained(checkpoint).vocab_size
    if len(tokens.values) and tokens.values.max() >= vocab_size:
        raise InputError(str(checkpoint), f"vocabulary of {vocab_size} tokens lacks token id {int(tokens.values.max())}",
                         "use the token dictionary the checkpoint was trained with")


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


class SequenceHead:
    """One label per cell (BertForSequenceClassification): a fold's targets are class ids by row."""

    @staticmethod
    def loss_of_batch(fold: Fold, loss_function: Loss) -> BatchLoss:
        labels_by_row = torch.from_numpy(fold.train_targets)

        def loss_of_batch(net, input_ids, attention_mask, batch_rows):
            logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
            return loss_function(logits.float(), labels_by_row[batch_rows].to(logits.device))

        return loss_of_batch

    @staticmethod
    def predict(model: torch.nn.Module, fold: Fold, batch_size: int, device: torch.device
                ) -> tuple[np.ndarray, None, np.ndarray]:
        """(test rows, no token ids, probabilities per test row)."""
        return fold.test_rows, None, predict_probabilities(model, fold.tokens, fold.test_rows, batch_size, device)


class TokenHead:
    """Labels on gene tokens (BertForTokenClassification): a fold's targets are class ids by token id,
    IGNORE_INDEX on every token without a label, which the loss skips."""

    @staticmethod
    def loss_of_batch(fold: Fold, loss_function: Loss) -> BatchLoss:
        lookup = torch.from_numpy(fold.train_targets)

        def loss_of_batch(net, input_ids, attention_mask, batch_rows):
            logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
            labels = lookup.to(logits.device)[input_ids]
            labelled = labels != IGNORE_INDEX
            return loss_function(logits[labelled].float(), labels[labelled])

        return loss_of_batch

    @staticmethod
    def predict(model: torch.nn.Module, fold: Fold, batch_size: int, device: torch.device
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, token id, probabilities) at every held-out gene's token in the test rows."""
        return predict_token_probabilities(model, fold.tokens, fold.test_rows, fold.test_targets, batch_size, device)


HEADS: dict[str, type] = {"sequence": SequenceHead, "token": TokenHead}  # by Task.head
