"""Smaller and faster variants of a fine-tuned cell classifier: weights size, speed and accuracy.

Every variant of a fold's model is scored on the held-out fold that model was never trained on,
so a change of macro F1 is the price of the variant, not of a different split. Variants:

- fp32: the model as fine-tuned (the reference).
- int8_dynamic: torchao `Int8DynamicActivationInt8WeightConfig` on every nn.Linear (int8 weights
  per output row, activations quantized per token at run time); embeddings, LayerNorms and biases
  stay fp32. Measured on the CPU, where dynamic int8 is the usual deployment.
- bf16, fp16: the whole model cast to that dtype. Measured on the GPU when there is one, else on
  the CPU (torch runs both there, slowly); the device column says which.

fp32 is measured on every device another requested variant uses, so each variant's latency can be
compared with fp32 on the same device.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core.batching import (
    RaggedTokens,
    dataset_rows,
    inference_batches,
    load_tokenized,
)
from ..core.errors import InputError
from ..core.folds import class_order, read_folds
from ..core.metrics import Predictions, fold_metrics
from ..core.model import pick_device
from ..core.outputs import predictions_table, write_tsv
from .settings import QuantizationSettings
from .tables import COLUMNS

log = logging.getLogger(__name__)

VARIANT_DTYPES = {"fp32": "float32", "int8_dynamic": "int8", "bf16": "bfloat16", "fp16": "float16"}
HALF_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU = torch.device("cpu")
SEED = 0


def benchmark_quantization(model_dir: str | Path, tokenized_dir: str | Path, folds_tsv: str | Path, fold: int,
                           settings: QuantizationSettings, threads: int, output_tsv: str | Path,
                           gpus: int | None = None) -> None:
    """One row per (variant, device, batch size) of the settings: weights size (MB), median latency per
    batch over settings.repeats passes, cells/s, and accuracy / macro F1 / macro AUC on the held-out
    `fold`'s cells (`gpus`: as model.pick_device)."""
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    tokens, dataset = load_tokenized(tokenized_dir)
    folds = read_folds(folds_tsv)
    classes = class_order(folds)
    rows, true_labels = held_out_cells(np.asarray(dataset["cell_id"]), folds, fold, str(tokenized_dir),
                                       str(folds_tsv))
    cell_ids = np.asarray(dataset["cell_id"])[rows]
    results = []
    for variant, device in measured_pairs(settings.variants, pick_device(gpus)):
        model = load_variant(model_dir, variant, classes)
        size_mb = weights_megabytes(model)
        model.to(device)
        for batch_size in settings.batch_sizes:
            batches = padded_batches(tokens, rows, batch_size)
            timed_pass(model, batches, len(rows), device)  # warm-up: kernels chosen, caches filled
            passes = [timed_pass(model, batches, len(rows), device) for _ in range(settings.repeats)]
            seconds = float(np.median([elapsed for _, elapsed in passes]))
            probabilities = passes[-1][0]
            predicted = predictions_table({"cell_id": cell_ids}, true_labels, classes, probabilities)["predicted_label"]
            scores = fold_metrics(Predictions(cell_ids, true_labels, predicted.to_numpy(), probabilities, classes))
            results.append({
                "variant": variant, "device": device.type, "dtype": VARIANT_DTYPES[variant], "size_mb": size_mb,
                "batch_size": batch_size, "latency_ms": 1000 * seconds / len(batches),
                "cells_per_s": len(rows) / seconds, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
                "macro_auc": np.nan if scores["macro_auc"] is None else scores["macro_auc"], "n_cells": len(rows),
            })
            log.info("%s on %s, batch %d: %.1f cells/s, macro F1 %.3f", variant, device.type, batch_size,
                     results[-1]["cells_per_s"], scores["macro_f1"])
    write_tsv(pd.DataFrame(results, columns=COLUMNS), output_tsv, float_format="%.6g")


def held_out_cells(cell_ids: np.ndarray, folds: pd.DataFrame, fold: int, tokenized_source: str, folds_source: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Dataset rows and true labels of the cells held out at `fold` (the cells finetune_fold predicts)."""
    held_out = folds[folds["fold"] == fold]
    if held_out.empty:
        raise InputError(folds_source, f"fold {fold} holds no cells", f"choose one of {sorted(folds['fold'].unique())}")
    rows = dataset_rows(cell_ids, held_out["cell_id"], folds_source,
                        f"benchmark with the tokenized dataset the model was fine-tuned on, not {tokenized_source}")
    return rows, held_out["label"].to_numpy(dtype=object)


def measured_pairs(variants: list[str], accelerator: torch.device) -> list[tuple[str, torch.device]]:
    """(variant, device) to measure: int8 on the CPU, bf16/fp16 on `accelerator`, fp32 on each of those
    devices (on `accelerator` alone when fp32 is the only variant)."""
    home = {"int8_dynamic": CPU, "bf16": accelerator, "fp16": accelerator}
    reference_devices = list(dict.fromkeys(home[variant] for variant in variants if variant in home)) or [accelerator]
    return [(variant, device) for variant in variants
            for device in (reference_devices if variant == "fp32" else [home[variant]])]


def load_variant(model_dir: str | Path, variant: str, classes: list[str]) -> torch.nn.Module:
    """The fine-tuned classifier converted to `variant`, on the CPU in eval mode; refused if its labels
    are not the folds' classes (a model of another experiment)."""
    from transformers import (
        AutoModelForSequenceClassification,  # BERT or ALBERT, as config.json says
    )

    if not (Path(model_dir) / "config.json").is_file():
        raise InputError(str(model_dir), "no config.json", "point model_dir at a fine-tuned fold's model directory")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32,
                                                               attn_implementation="sdpa")
    model_classes = [model.config.id2label[index] for index in range(model.config.num_labels)]
    if model_classes != classes:
        raise InputError(str(model_dir), f"predicts classes {model_classes}, the folds have {classes}",
                         "benchmark a model fine-tuned on this experiment's folds")
    model.eval()
    if variant == "int8_dynamic":
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            quantize_,
        )

        quantize_(model, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))  # nn.Linear only
    elif variant in HALF_PRECISION:
        model.to(HALF_PRECISION[variant])
    return model


def weights_megabytes(model: torch.nn.Module) -> float:
    """Size (10^6 bytes) of the model's state dict saved as one safetensors file.

    Plain tensors are saved as they are. torchao's Int8Tensor weights cannot be (safetensors needs
    plain storage), so the state dict is first flattened with torchao's flatten_tensor_state_dict
    into int8 data, scale and zero-point tensors plus JSON metadata: the layout transformers writes
    for torchao checkpoints, read back with unflatten_tensor_state_dict.
    """
    from safetensors.torch import save_file

    state = model.state_dict()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.safetensors"
        if all(type(tensor) is torch.Tensor for tensor in state.values()):
            save_file(state, str(path))
        else:
            from torchao.prototype.safetensors.safetensors_support import (
                flatten_tensor_state_dict,
            )

            tensors, metadata = flatten_tensor_state_dict(state)
            save_file(tensors, str(path), metadata=metadata)
        return path.stat().st_size / 1e6


def padded_batches(tokens: RaggedTokens, rows: np.ndarray, batch_size: int
                   ) -> list[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Length-sorted batches (as finetune.predict_probabilities makes them), each padded to its longest
    cell, built once so padding on the host is not part of the timed passes."""
    return [(batch, *tokens.padded(rows[batch])) for batch in inference_batches(tokens.lengths[rows], batch_size)]


@torch.no_grad()
def timed_pass(model: torch.nn.Module, batches: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]], n_cells: int,
               device: torch.device) -> tuple[np.ndarray, float]:
    """Softmax probabilities (in the order of the held-out rows) and wall seconds of one pass.

    The model runs in its own dtype, without finetune.predict_probabilities' bf16 autocast, which on a
    GPU would run the fp32 and fp16 variants in bf16. Copies to and from the device are timed.
    """
    probabilities = np.zeros((n_cells, model.config.num_labels), dtype=np.float64)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for batch, input_ids, attention_mask in batches:
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        probabilities[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()  # .cpu() waits for the GPU
    return probabilities, time.perf_counter() - start
