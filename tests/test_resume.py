"""Interrupted training resumes to the uninterrupted result; CUDA out-of-memory retries with half the micro-batch."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import DEFAULT_CONFIG_PATH, REPO
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import BertConfig, BertForSequenceClassification

from workflow_scripts.core.batching import RaggedTokens
from workflow_scripts.core.config import load_config
from workflow_scripts.core.errors import InputError
from workflow_scripts.core.model import geneformer_config, new_masked_lm
from workflow_scripts.core.sections import TokenizerSettings
from workflow_scripts.core.training import CHECKPOINT_FILE, resume_dir_of, train
from workflow_scripts.finetune.finetuning import finetune_fold
from workflow_scripts.finetune.settings import FinetuningSettings
from workflow_scripts.pretrain.pretraining import pretrain_model
from workflow_scripts.pretrain.settings import ModelSettings, PretrainingSettings

CONFIG = load_config(DEFAULT_CONFIG_PATH)  # the schema's and config.yaml's settings, with the test's sizes below
MODEL = {**{key: value for key, value in CONFIG["model"].items() if key not in ("checkpoint", "download")},
         "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
         "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}  # dropout: resuming restores its RNG
N_GENES, N_CELLS, MODEL_INPUT_SIZE = 40, 90, 24
FINETUNING = {**CONFIG["finetuning"], "epochs": 3, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 2,
              "head_only_epochs": 1, "checkpoint_every_steps": 4}
PRETRAINING = {**CONFIG["pretraining"], "epochs": 3, "batch_size": 8, "learning_rate": 1e-3, "warmup_steps": 3,
               "validation_fraction": 0.1, "checkpoint_every_steps": 0,
               "masking": {**CONFIG["pretraining"]["masking"], "schedule": "linear"}}  # its clock is resumed too

# The job in a child process that SIGKILLs itself right after optimizer step KILL_AT_STEP.
KILLED_CHILD = """
import os, signal, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
from workflow_scripts import cli

steps = 0

def kill_after_step(optimizer, args, kwargs):
    global steps
    steps += 1
    if steps == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)

register_optimizer_step_post_hook(kill_after_step)
sys.exit(cli.main(sys.argv[1:]))
"""


class Interrupted(Exception):
    """Stands in for a kill in tests that interrupt training in this process."""


@pytest.fixture
def one_thread():
    """One thread, as the jobs here run (--threads 1): float sums come out the same in every process,
    and tiny models train fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cells(tmp_path):
    """A tokenized dataset (cell_id, input_ids) of two classes with marker genes, a token dictionary,
    folds.tsv and a small pretrained checkpoint."""
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b"], N_CELLS // 2)
    input_ids = []
    for label in labels:
        marker = 4 if label == "a" else 5
        genes = rng.choice(np.arange(6, N_GENES), rng.integers(6, MODEL_INPUT_SIZE - 2), replace=False)
        input_ids.append([2, marker, *genes.tolist()])
    cell_ids = [f"cell_{i:03d}" for i in range(N_CELLS)]
    datasets.Dataset.from_dict({"cell_id": cell_ids, "input_ids": input_ids}).save_to_disk(tmp_path / "cells.dataset")
    names = ["<pad>", "<mask>", "<cls>", "<eos>"] + [f"ENSG{i:011d}" for i in range(4, N_GENES)]
    pd.DataFrame({"token": names, "token_id": range(N_GENES)}).to_csv(tmp_path / "tokens.tsv", sep="\t", index=False)
    pd.DataFrame({"cell_id": cell_ids, "label": labels, "fold": np.arange(N_CELLS) % 3}).to_csv(
        tmp_path / "folds.tsv", sep="\t", index=False)
    new_masked_lm(geneformer_config(MODEL, N_GENES, MODEL_INPUT_SIZE), 0).save_pretrained(tmp_path / "checkpoint")
    return tmp_path


def killed_finetuning(cells, out, settings, kill_at_step):
    """`python -m workflow_scripts finetune ...` in a child process that SIGKILLs itself after a step."""
    arguments = ["finetune", "--task", "cell_classification", "--tokenized-dir", str(cells / "cells.dataset"), "--folds-tsv", str(cells / "folds.tsv"),
                 "--fold", "0", "--checkpoint", str(cells / "checkpoint"), "--settings", json.dumps(settings),
                 "--seed", "0", "--threads", "1", "--output-predictions", str(out / "predictions.tsv"),
                 "--output-log", str(out / "training_log.tsv"), "--output-model", str(out / "model")]
    return subprocess.run([sys.executable, "-c", KILLED_CHILD, *arguments], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KILL_AT_STEP": str(kill_at_step)}, timeout=300, check=False)


def finetune(cells, out, settings):
    finetune_fold("cell_classification", cells / "cells.dataset", cells / "folds.tsv", 0, cells / "checkpoint",
                  FinetuningSettings.from_config(settings), 0, 1, out / "predictions.tsv", out / "training_log.tsv",
                  out / "model")


def output_bytes(out, names):
    return {name: (out / name).read_bytes() for name in names}


FOLD_OUTPUTS = ["predictions.tsv", "training_log.tsv", "model/model.safetensors", "model/config.json"]


def test_finetuning_killed_mid_epoch_resumes_to_the_uninterrupted_outputs(cells, one_thread, caplog):
    """60 training cells, batches of 8: 8 steps an epoch. Checkpoints at steps 4, 8 (epoch end) and 12;
    the kill after step 14 falls in epoch 2, so two steps are redone from the step-12 checkpoint."""
    finetune(cells, cells / "reference", FINETUNING)
    resumed = cells / "resumed"
    killed = killed_finetuning(cells, resumed, FINETUNING, kill_at_step=14)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (resume_dir_of(resumed / "model") / CHECKPOINT_FILE).exists()
    assert not (resumed / "model").exists() and not (resumed / "predictions.tsv").exists()

    with caplog.at_level(logging.INFO, logger="workflow_scripts.core.training"):
        finetune(cells, resumed, FINETUNING)  # the rerun, in another process than the killed one
    assert "epoch 2, 4 of 8 batches done, step 12" in caplog.text
    assert output_bytes(resumed, FOLD_OUTPUTS) == output_bytes(cells / "reference", FOLD_OUTPUTS)  # byte for byte
    assert not resume_dir_of(resumed / "model").exists()  # removed once the outputs are written


@contextlib.contextmanager
def interrupted_after_step(step):
    """Training inside raises Interrupted right after optimizer step `step`."""
    steps = []

    def hook(optimizer, args, kwargs):
        steps.append(step)
        if len(steps) == step:
            raise Interrupted

    handle = register_optimizer_step_post_hook(hook)
    try:
        with pytest.raises(Interrupted):
            yield
    finally:
        handle.remove()


def pretrain(cells, out, settings):
    tokenizer = TokenizerSettings(**{**CONFIG["tokenizer"], "model_input_size": MODEL_INPUT_SIZE})
    pretraining = PretrainingSettings.from_config(settings)
    pretrain_model(cells / "cells.dataset", cells / "tokens.tsv", ModelSettings.from_config(MODEL), pretraining,
                   tokenizer, pretraining.masking, 0, 1, out)


PRETRAINED_OUTPUTS = ["model.safetensors", "training_log.tsv"]


def test_pretraining_resumes_from_an_epoch_end_with_its_masking_generator(cells, one_thread, caplog):
    """81 training cells: 11 steps an epoch, checkpoints at epoch ends only; interrupted after step 15
    (epoch 2), the rerun goes on from step 11 with the masking generator's state of then."""
    pretrain(cells, cells / "reference", PRETRAINING)
    with interrupted_after_step(15):
        pretrain(cells, cells / "resumed", PRETRAINING)
    with caplog.at_level(logging.INFO, logger="workflow_scripts.core.training"):
        pretrain(cells, cells / "resumed", PRETRAINING)
    assert "epoch 2, 0 of 11 batches done, step 11" in caplog.text
    assert output_bytes(cells / "resumed", PRETRAINED_OUTPUTS) == output_bytes(cells / "reference", PRETRAINED_OUTPUTS)
    assert pd.read_csv(cells / "resumed" / "training_log.tsv", sep="\t")["validation_loss"].notna().sum() == 3


def test_a_checkpoint_of_other_settings_is_ignored(cells, one_thread, caplog):
    pretrain(cells, cells / "reference", PRETRAINING)
    stale = {**PRETRAINING, "learning_rate": 5e-3}
    with interrupted_after_step(12):
        pretrain(cells, cells / "resumed", stale)
    assert (resume_dir_of(cells / "resumed") / CHECKPOINT_FILE).exists()
    with caplog.at_level(logging.INFO, logger="workflow_scripts.core.training"):
        pretrain(cells, cells / "resumed", PRETRAINING)
    assert "written for other settings, data or initial weights: ignored" in caplog.text
    assert "resuming" not in caplog.text
    assert output_bytes(cells / "resumed", PRETRAINED_OUTPUTS) == output_bytes(cells / "reference", PRETRAINED_OUTPUTS)
    assert not resume_dir_of(cells / "resumed").exists()


# Out of memory: train() directly on a tiny classifier, with a loss that fails for batches over a limit.
SETTINGS = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "lr_scheduler": "linear", "warmup_steps": 1,
            "weight_decay": 0.01, "max_grad_norm": 1.0}


def tiny_training(cells_that_fit: int | None):
    """Train a tiny classifier on 30 cells; forward passes of more than `cells_that_fit` cells raise
    CUDA's out-of-memory error. Returns the parameters, the step log and the cells of every forward pass."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 12, 30)
    tokens = RaggedTokens(rng.integers(2, 30, int(lengths.sum())), np.concatenate([[0], np.cumsum(lengths)]))
    labels = torch.from_numpy(rng.integers(0, 2, 30))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))
    forward_passes = []

    def loss_of_batch(net, input_ids, attention_mask, rows):
        forward_passes.append(rows)
        if cells_that_fit is not None and len(rows) > cells_that_fit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return F.cross_entropy(net(input_ids=input_ids, attention_mask=attention_mask).logits, labels[rows])

    table = train(model, tokens, np.arange(30), loss_of_batch, SETTINGS, 0, torch.device("cpu"), None)
    return dict(model.named_parameters()), table, forward_passes


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_batch(caplog, one_thread):
    full_parameters, full_log, full_passes = tiny_training(None)
    with caplog.at_level(logging.WARNING, logger="workflow_scripts.core.training"):
        parameters, log, passes = tiny_training(4)
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == [("CUDA out of memory at step 1 with a micro-batch of 8 cells: retrying with 4 cells and "
                         "2 gradient accumulation steps (8 cells per optimizer step, as before)")]
    assert len(passes[0]) == 8 and all(len(rows) <= 4 for rows in passes[1:])  # smaller from then on
    # every optimizer step still saw its whole batch: each pair of parts is one batch of the run without errors
    parts = passes[1:]  # batches of 8, 8, 8 and 6 cells an epoch, each in two parts of at most 4
    assert [np.concatenate(parts[i:i + 2]).tolist() for i in range(0, len(parts), 2)] == \
        [rows.tolist() for rows in full_passes]
    assert log["step"].tolist() == full_log["step"].tolist()
    # the mean of two half-batch means is the batch mean up to float rounding
    np.testing.assert_allclose(log["loss"], full_log["loss"], rtol=1e-6)
    for name, parameter in parameters.items():
        torch.testing.assert_close(parameter, full_parameters[name], rtol=1e-5, atol=1e-6)


def test_out_of_memory_with_one_cell_per_pass_stops_with_a_clear_error(caplog, one_thread):
    with caplog.at_level(logging.WARNING, logger="workflow_scripts.core.training"), \
            pytest.raises(InputError, match="out of GPU memory at step 1 with one cell per forward pass"):
        tiny_training(0)
    assert [record.getMessage().split(":")[0] for record in caplog.records] == \
        ["CUDA out of memory at step 1 with a micro-batch of 8 cells",
         "CUDA out of memory at step 1 with a micro-batch of 4 cells",
         "CUDA out of memory at step 1 with a micro-batch of 2 cells"]
