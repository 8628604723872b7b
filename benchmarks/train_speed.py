"""Training throughput: the workflow's training loop against a plain Hugging Face Trainer, on the same
synthetic cells, in one run. Not a test: run it, read the ratio, and copy it with the machine into
benchmarks/README.md.

    python benchmarks/train_speed.py --output /tmp/train_speed.md

(a) the workflow: `workflow_scripts.core.training.train` with a plain cross-entropy loss, the classifier from
    the workflow's builder (`model.classifier`, SDPA attention), length-grouped batches padded to their
    longest cell, bf16 autocast on GPU.
(b) the plain approach: `transformers.Trainer` with default TrainingArguments (fp32, random sampling, no
    group_by_length; only batch size, epochs, learning rate and seed set, plus no reporting, saving or
    evaluation), the same BertForSequenceClassification config with eager attention, every cell padded
    to model_input_size (a `datasets.Dataset` of padded input_ids, attention_mask and labels, default
    collator).
Both: the same cells, labels, initial weights (same seed), batch size, one epoch, learning rate, linear
schedule without warmup or weight decay (the Trainer's defaults, given to (a) too), gradient clipping 1.0.

Cells: synthetic token ids (seeded numpy rng) from a vocabulary of 25,426 (Geneformer V1's dictionary),
ids 0 and 1 reserved (<pad>, <mask>); lengths log-normal with median 40% of model_input_size and sigma
0.6, cut at model_input_size (about 6% of cells at the cap), like Geneformer's corpora where the input
size is reached only by the richest cells. Throughput does not depend on the ids' meaning.

Timing covers the training loop only: `train(...)` for (a) and `trainer.train()` for (b), wall clock
(the Trainer's own train_samples_per_second is printed in the JSON too); building models and data is
outside. tokens/s counts real (non-padding) tokens, the same number on both sides.

On CUDA (`--device cuda`, or auto when available) the script also trains (a) in bf16 for two model sizes,
6 layers/256 hidden/4 heads/512 FFN and 12/768/12/3072, at model_input_size 2048, and reports tokens/s
and model FLOPs utilization, MFU = achieved FLOPs/s / peak bf16 FLOPs/s (`--peak-flops`, default
989e12: dense bf16 of an H100/H200 SXM). Training FLOPs of a batch of b cells padded to width w:
    b * w * (6 * N + 12 * L * w * h)
N = parameters outside the embeddings (encoder, pooler, classifier), L layers, h hidden size. 6 * N:
forward 2 FLOPs per parameter per token, backward twice that. 12 * L * w * h: per layer and token the
attention scores (Q K^T) and their use (A V) take 2 * w * h FLOPs each forward, times 3 for forward and
backward (as in PaLM, Chowdhery et al. 2022, appendix B). Padded positions are counted: the GPU computes
them. Each GPU measurement follows an untimed warm-up of two batches on a throwaway model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from workflow_scripts.core.batching import RaggedTokens
from workflow_scripts.core.config import load_config

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "config.yaml"  # noqa: E402
from workflow_scripts.core.model import classifier, geneformer_config
from workflow_scripts.core.training import train

VOCAB_SIZE = 25_426  # Geneformer V1 token dictionary
FIRST_GENE_TOKEN = 2  # 0 <pad>, 1 <mask>
MEDIAN_LENGTH_FRACTION = 0.4
LENGTH_SIGMA = 0.6
N_LABELS = 3
GPU_SIZES = {"6L-256": (6, 256, 4, 512), "12L-768": (12, 768, 12, 3072)}  # layers, hidden, heads, FFN
GPU_INPUT_SIZE = 2048


def synthetic_cells(n_cells: int, model_input_size: int, seed: int) -> tuple[RaggedTokens, np.ndarray]:
    """Token ids of n_cells Geneformer-like cells and a class label per cell."""
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.normal(np.log(MEDIAN_LENGTH_FRACTION * model_input_size), LENGTH_SIGMA, n_cells))
    lengths = np.clip(lengths.round(), 1, model_input_size).astype(np.int64)
    values = rng.integers(FIRST_GENE_TOKEN, VOCAB_SIZE, int(lengths.sum()), dtype=np.int64)
    labels = rng.integers(0, N_LABELS, n_cells, dtype=np.int64)
    return RaggedTokens(values, np.concatenate([[0], np.cumsum(lengths)])), labels


def model_directory(sizes: tuple[int, int, int, int], model_input_size: int, directory: Path) -> Path:
    """A config-only checkpoint directory: the workflow's model defaults with these sizes."""
    layers, hidden, heads, intermediate = sizes
    model = {**load_config(REPO_CONFIG)["model"], "num_hidden_layers": layers, "hidden_size": hidden,
             "num_attention_heads": heads, "intermediate_size": intermediate}
    geneformer_config(model, VOCAB_SIZE, model_input_size).save_pretrained(directory)
    return directory


def workflow_model(checkpoint: Path, seed: int) -> torch.nn.Module:
    """The workflow's sequence classifier, randomly initialised (SDPA attention)."""
    return classifier(checkpoint, "sequence", N_LABELS, {i: str(i) for i in range(N_LABELS)}, "random", seed)


def plain_model(checkpoint: Path, seed: int) -> BertForSequenceClassification:
    """The same architecture and initial weights with eager attention, as a plain script builds it."""
    torch.manual_seed(seed)
    config = BertConfig.from_pretrained(checkpoint, num_labels=N_LABELS)
    return BertForSequenceClassification._from_config(config, attn_implementation="eager")


def settings_of(batch_size: int, learning_rate: float) -> dict[str, Any]:
    """The workflow's training settings matching the Trainer's defaults (linear, no warmup or decay)."""
    return {"batch_size": batch_size, "epochs": 1, "learning_rate": learning_rate, "lr_scheduler": "linear",
            "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_workflow(checkpoint: Path, tokens: RaggedTokens, labels: np.ndarray, settings: dict[str, Any], seed: int,
                 device: torch.device, work: Path) -> dict[str, Any]:
    """Side (a): seconds of `train` and the (cells, width) of every batch it padded."""
    labels_tensor = torch.from_numpy(labels)
    shapes: list[tuple[int, int]] = []

    def loss_of_batch(net, input_ids, attention_mask, batch_rows):
        shapes.append(tuple(input_ids.shape))
        logits = net(input_ids=input_ids, attention_mask=attention_mask).logits
        return torch.nn.functional.cross_entropy(logits.float(), labels_tensor[batch_rows].to(logits.device))

    rows = np.arange(len(tokens))
    if device.type == "cuda":  # CUDA context, kernels and allocator warmed on a throwaway model
        train(workflow_model(checkpoint, seed), tokens, rows[:2 * settings["batch_size"]], loss_of_batch, settings,
              seed, device, work / "warmup.tsv")
        shapes.clear()
    model = workflow_model(checkpoint, seed)
    synchronize(device)
    start = time.perf_counter()
    train(model, tokens, rows, loss_of_batch, settings, seed, device, work / "workflow.tsv")
    synchronize(device)
    return {"seconds": time.perf_counter() - start, "batch_shapes": shapes, "model": model}


def run_trainer(checkpoint: Path, tokens: RaggedTokens, labels: np.ndarray, model_input_size: int,
                batch_size: int, learning_rate: float, seed: int, device: torch.device, work: Path) -> dict[str, Any]:
    """Side (b): seconds of `trainer.train()` on cells padded to model_input_size, and its own metrics."""
    lengths = tokens.lengths
    attention_mask = (np.arange(model_input_size)[None, :] < lengths[:, None]).astype(np.int64)
    input_ids = np.zeros(attention_mask.shape, dtype=np.int64)
    input_ids[attention_mask.astype(bool)] = tokens.values
    dataset = datasets.Dataset.from_dict({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
    dataset.set_format("torch")
    arguments = TrainingArguments(
        output_dir=str(work / "trainer"), per_device_train_batch_size=batch_size, num_train_epochs=1,
        learning_rate=learning_rate, seed=seed, report_to=[], save_strategy="no", eval_strategy="no",
        use_cpu=device.type == "cpu",
    )
    trainer = Trainer(model=plain_model(checkpoint, seed), args=arguments, train_dataset=dataset)
    synchronize(device)
    start = time.perf_counter()
    output = trainer.train()
    synchronize(device)
    return {"seconds": time.perf_counter() - start, "metrics": output.metrics,
            "attention": trainer.model.config._attn_implementation}


def training_flops(model: torch.nn.Module, batch_shapes: list[tuple[int, int]]) -> float:
    """Training FLOPs of the batches: b * w * (6 * N + 12 * L * w * h) (see the module docstring)."""
    config = model.config
    non_embedding = sum(p.numel() for p in model.parameters()) - sum(
        p.numel() for p in model.base_model.embeddings.parameters())
    return float(sum(b * w * (6 * non_embedding + 12 * config.num_hidden_layers * w * config.hidden_size)
                     for b, w in batch_shapes))


def gpu_utilization(n_cells: int, batch_size: int, learning_rate: float, peak_flops: float, seed: int,
                    device: torch.device, work: Path) -> list[dict[str, Any]]:
    """Side (a) in bf16 for the GPU_SIZES models at input 2048: tokens/s and MFU."""
    tokens, labels = synthetic_cells(n_cells, GPU_INPUT_SIZE, seed)
    results = []
    for name, sizes in GPU_SIZES.items():
        checkpoint = model_directory(sizes, GPU_INPUT_SIZE, work / f"model_{name}")
        run = run_workflow(checkpoint, tokens, labels, settings_of(batch_size, learning_rate), seed, device, work)
        flops = training_flops(run["model"], run["batch_shapes"])
        results.append({
            "model": name, "layers": sizes[0], "hidden": sizes[1], "heads": sizes[2], "intermediate": sizes[3],
            "cells": n_cells, "batch_size": batch_size, "seconds": run["seconds"],
            "samples_per_s": n_cells / run["seconds"],
            "tokens_per_s": int(tokens.lengths.sum()) / run["seconds"],
            "padded_tokens_per_s": sum(b * w for b, w in run["batch_shapes"]) / run["seconds"],
            "tflops_per_s": flops / run["seconds"] / 1e12, "mfu": flops / run["seconds"] / peak_flops,
        })
        del run
        torch.cuda.empty_cache()
    return results


def measure(arguments: argparse.Namespace, device: torch.device, work: Path) -> dict[str, Any]:
    sizes = (arguments.layers, arguments.hidden, arguments.heads, arguments.intermediate)
    checkpoint = model_directory(sizes, arguments.model_input_size, work / "model")
    tokens, labels = synthetic_cells(arguments.cells, arguments.model_input_size, arguments.seed)
    settings = settings_of(arguments.batch_size, arguments.learning_rate)
    workflow = run_workflow(checkpoint, tokens, labels, settings, arguments.seed, device, work)
    plain = run_trainer(checkpoint, tokens, labels, arguments.model_input_size, arguments.batch_size,
                        arguments.learning_rate, arguments.seed, device, work)
    real_tokens = int(tokens.lengths.sum())
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
                   f"device {device} ({device_name})",
        "config": {"cells": arguments.cells, "model_input_size": arguments.model_input_size,
                   "median_length": float(np.median(tokens.lengths)),
                   "cells_at_cap": int((tokens.lengths == arguments.model_input_size).sum()),
                   "layers": arguments.layers, "hidden": arguments.hidden, "heads": arguments.heads,
                   "intermediate": arguments.intermediate, "vocab_size": VOCAB_SIZE, "batch_size": arguments.batch_size,
                   "epochs": 1, "learning_rate": arguments.learning_rate, "seed": arguments.seed},
        "workflow": {"seconds": workflow["seconds"], "samples_per_s": arguments.cells / workflow["seconds"],
                     "tokens_per_s": real_tokens / workflow["seconds"],
                     "padded_tokens": sum(b * w for b, w in workflow["batch_shapes"]),
                     "attention": workflow["model"].config._attn_implementation,
                     "precision": "bf16 autocast" if device.type == "cuda" else "fp32"},
        "trainer": {"seconds": plain["seconds"], "samples_per_s": arguments.cells / plain["seconds"],
                    "tokens_per_s": real_tokens / plain["seconds"],
                    "padded_tokens": arguments.cells * arguments.model_input_size,
                    "attention": plain["attention"], "precision": "fp32",
                    "reported_train_samples_per_second": plain["metrics"].get("train_samples_per_second")},
    }
    results["ratio"] = results["workflow"]["samples_per_s"] / results["trainer"]["samples_per_s"]
    if device.type == "cuda":
        results["gpu"] = gpu_utilization(arguments.gpu_cells, arguments.gpu_batch_size, arguments.learning_rate,
                                         arguments.peak_flops, arguments.seed, device, work)
        results["peak_flops"] = arguments.peak_flops
    return results


def as_markdown(results: dict[str, Any]) -> str:
    config, workflow, trainer = results["config"], results["workflow"], results["trainer"]
    lines = [
        f"Machine: {results['machine']}.",
        "",
        f"Config: {config['cells']:,} synthetic cells (median length {config['median_length']:,.0f}, "
        f"{config['cells_at_cap']:,} at the cap), model_input_size {config['model_input_size']:,}, "
        f"{config['layers']} layers, hidden {config['hidden']}, {config['heads']} heads, FFN {config['intermediate']}, "
        f"vocabulary {config['vocab_size']:,}, batch {config['batch_size']}, 1 epoch, lr {config['learning_rate']:g}, "
        f"seed {config['seed']}. Time: wall clock of the training loop only (`train(...)`, `trainer.train()`); "
        f"tokens/s counts real (non-padding) tokens.",
        "",
        "| side | attention, precision, padding | seconds | samples/s | tokens/s | padded tokens |",
        "|---|---|---|---|---|---|",
        f"| (a) workflow `train` | {workflow['attention']}, {workflow['precision']}, length-grouped batches padded "
        f"to their longest cell | {workflow['seconds']:.1f} | {workflow['samples_per_s']:,.2f} | "
        f"{workflow['tokens_per_s']:,.0f} | {workflow['padded_tokens']:,} |",
        f"| (b) HF `Trainer`, defaults | {trainer['attention']}, {trainer['precision']}, every cell padded to "
        f"{config['model_input_size']:,} | {trainer['seconds']:.1f} | {trainer['samples_per_s']:,.2f} | "
        f"{trainer['tokens_per_s']:,.0f} | {trainer['padded_tokens']:,} |",
        "",
        f"Ratio (a)/(b), samples/s: **{results['ratio']:.1f}x**.",
    ]
    if "gpu" in results:
        lines += [
            "",
            f"GPU, workflow `train` in bf16, input {GPU_INPUT_SIZE:,}; MFU against a peak of "
            f"{results['peak_flops'] / 1e12:,.0f} TFLOP/s, FLOPs per batch b * w * (6 N + 12 L w h) "
            f"with padded width w:",
            "",
            "| model | cells | batch | seconds | samples/s | tokens/s | padded tokens/s | TFLOP/s | MFU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {row['layers']} layers / {row['hidden']} hidden / {row['heads']} heads / "
                  f"{row['intermediate']} FFN "
                  f"| {row['cells']:,} | {row['batch_size']} | {row['seconds']:.2f} | {row['samples_per_s']:,.1f} | "
                  f"{row['tokens_per_s']:,.0f} | {row['padded_tokens_per_s']:,.0f} | {row['tflops_per_s']:.1f} | "
                  f"{row['mfu']:.1%} |" for row in results["gpu"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=128)
    parser.add_argument("--model-input-size", type=int, default=2048, help="Geneformer V1: 2048")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="Geneformer's fine-tuning rate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--gpu-cells", type=int, default=4096, help="cells per GPU (MFU) measurement")
    parser.add_argument("--gpu-batch-size", type=int, default=32)
    parser.add_argument("--peak-flops", type=float, default=989e12,
                        help="peak dense bf16 FLOP/s of the GPU (default: H100/H200 SXM, 989e12)")
    parser.add_argument("--output", type=Path, default=None, help="also write the markdown table here")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if arguments.device == "auto" else arguments.device)
    with tempfile.TemporaryDirectory() as work:
        results = measure(arguments, device, Path(work))
    markdown = as_markdown(results)
    if arguments.output is not None:
        arguments.output.write_text(markdown)
    print(json.dumps(results, indent=2, default=str))
    print(markdown)


if __name__ == "__main__":
    main()
