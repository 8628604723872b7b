"""`python -m workflow_scripts COMMAND --arg value ...`: one command per rule, one function per command.

Arguments are the function's parameters (underscores as dashes). Paths, strings and numbers are
given as they are; dicts, lists and booleans as JSON. Bad input ends with exit code 2 and the
InputError message (which input, what is wrong, how to fix it) instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

from .core.errors import InputError
from .core.settings import Settings

# command -> "module:function" (imported lazily so `--help` stays fast)
COMMANDS = {
    "simulate": "simulate.simulator:simulate_dataset",
    "download": "prepare.download:download_file",
    "prepare": "prepare.readers:prepare_dataset",
    "medians": "reference.medians:compute_gene_medians",
    "reference": "reference.medians:build_reference",
    "tokenize": "tokenization.tokenizer:tokenize_dataset",
    "check": "preflight.checks:check_experiment",
    "folds": "preflight.folds:make_folds",
    "gene-labels": "simulate.simulator:write_gene_labels",
    "gene-labels-from-pickle": "prepare.readers:gene_labels_from_pickle",
    "gene-sets": "simulate.simulator:write_gene_sets",
    "pretrain": "pretrain.pretraining:pretrain_model",
    "ablation-table": "ablation.variants:collect_ablation",
    "finetune": "finetune.finetuning:finetune_fold",
    "baseline": "baselines.classifiers:run_baseline",
    "summarize": "evaluate.summary:summarize_experiment",
    "figures": "evaluate.figures:plot_experiment",
    "relative-change": "evaluate.figures:plot_relative_change",
    "training-size-sweep": "sweep.tables:write_training_size_sweep",
    "aggregate": "aggregate.tables:collect_experiments",
    "compare": "aggregate.tables:compare_with_reported",
    "runtime": "aggregate.runtime:collect_runtime",
    "results-document": "aggregate.results_document:write_results_document",
    "quantize": "quantize.quantization:benchmark_quantization",
    "quantization-table": "quantize.tables:collect_quantization",
    "embeddings": "embeddings.embedding:extract_embeddings",
    "pca-embedding": "embeddings.scoring:pca_embedding",
    "score-embeddings": "embeddings.scoring:score_embeddings",
    "perturb": "perturb.perturbation:run_perturbation",
    "perturbation-truth": "perturb.truth:perturbation_truth",
    "perturbation-figures": "perturb.figures:plot_perturbation",
}


def resolve(command: str) -> Callable:
    module, function = COMMANDS[command].split(":")
    return getattr(importlib.import_module(f"workflow_scripts.{module}"), function)


def _converter(annotation, name: str) -> Callable[[str], object]:
    """How to read one command-line value for a parameter of this type (settings: one JSON object)."""
    if isinstance(annotation, type) and issubclass(annotation, Settings):
        return lambda text: annotation.from_json(text, where=f"--{name.replace('_', '-')}")
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = set(typing.get_args(annotation)) if is_union else {annotation}
    kinds.discard(type(None))
    if kinds <= {str, Path}:
        return str
    if kinds == {int}:
        return int
    if kinds == {float} or kinds == {int, float}:
        return float
    return json.loads  # dict, list, bool, tuples of those


def build_parser(command: str) -> argparse.ArgumentParser:
    """Parser for one command, built from its function's signature."""
    function = resolve(command)
    hints = typing.get_type_hints(function)
    parser = argparse.ArgumentParser(prog=f"python -m workflow_scripts {command}", description=function.__doc__)
    for name, parameter in inspect.signature(function).parameters.items():
        optional = type(None) in typing.get_args(hints[name])  # `X | None` may be left out: None
        required = parameter.default is inspect.Parameter.empty and not optional
        default = None if parameter.default is inspect.Parameter.empty else parameter.default
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_converter(hints[name], name),
                            required=required, default=default)
    return parser


def main(argv: list[str] | None = None, process_settings: list[str] | None = None) -> int:
    """Run one command; `process_settings` (from process_tuning) are logged first."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m workflow_scripts {{{','.join(COMMANDS)}}} [--help | --arg value ...]",
              file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for setting in process_settings or []:
        logging.getLogger(__name__).info("process setting: %s", setting)
    try:
        arguments = vars(build_parser(argv[0]).parse_args(argv[1:]))  # settings are parsed here: bad keys stop now
        resolve(argv[0])(**arguments)
    except InputError as error:
        print(f"ERROR (bad input) {error}", file=sys.stderr)
        return 2
    return 0
