"""Configuration: schema validation with defaults, and the merged settings each job uses."""

from __future__ import annotations

import copy
import functools
import logging
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import truths
from .errors import InputError

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"  # shipped with the package
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what from_pretrained loads (safely)
HUGGINGFACE_REVISION = re.compile(r"^https://huggingface\.co/(?:datasets/)?[^/]+/[^/]+/resolve/(?P<revision>[^/]+)/")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
AUTO_REFERENCE = "auto"  # reference.*: the corpus's dictionaries, or Geneformer's for real data


@functools.cache
def load_schema() -> dict[str, Any]:
    """The configuration schema, read once per process (callers must not modify it)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def check_section(settings: dict[str, Any], section_schema: dict[str, Any], where: str, fix: str) -> None:
    """Validate merged settings (a method's fine-tuning overrides, an ablation variant) against one
    section of the schema; the first problem names its key under `where`."""
    validator = jsonschema.Draft202012Validator({**section_schema, "definitions": load_schema()["definitions"]})
    error = jsonschema.exceptions.best_match(validator.iter_errors(settings))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path)
        raise InputError(f"{where}.{key}" if key else where, f"invalid: {error.message}", fix)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return base updated recursively with override (override wins)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the schema, fill defaults in place, and check cross-references."""
    from snakemake.utils import (
        validate,  # Snakemake's validator fills defaults recursively
    )

    removed = {section: [name for name, entry in (config.get(section) or {}).items() if entry is None]
               for section in ("datasets", "experiments")}  # a preset leaves out an entry by setting it to null
    for section, names in removed.items():
        for name in names:
            del config[section][name]
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema()).iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise InputError(
            f"{source}: {key}",
            f"does not match the configuration schema: {error.message}",
            "fix or remove the key (config/README.md lists every key with its type and default)",
        )
    validate(config, str(SCHEMA_PATH), set_default=True)
    drop_what_names_removed(config, removed["datasets"], removed["experiments"], source)
    for name, experiment in config["experiments"].items():
        if experiment["dataset"] not in config["datasets"]:
            raise InputError(
                f"{source}: experiments.{name}.dataset",
                f"names dataset '{experiment['dataset']}', which is not under datasets",
                f"add datasets.{experiment['dataset']} or use one of {sorted(config['datasets'])}",
            )
        check_task_keys(config, name, f"{source}: experiments.{name}")
        if experiment["split"] == "grouped" and not experiment["group_column"]:
            raise InputError(
                f"{source}: experiments.{name}",
                "split: grouped needs a group_column",
                "set group_column (e.g. donor) or use split: stratified",
            )
        if experiment["reference_method"] and experiment["reference_method"] not in experiment["methods"]:
            raise InputError(
                f"{source}: experiments.{name}.reference_method",
                f"'{experiment['reference_method']}' is not a method of this experiment",
                f"use one of {sorted(experiment['methods'])} or null",
            )
        for method in experiment["methods"]:
            method_settings(config, name, method, source)
    for name, dataset in config["datasets"].items():
        if dataset["source"] == "h5ad" and not dataset["path"]:
            raise InputError(f"{source}: datasets.{name}", "source h5ad needs a path", "set datasets.NAME.path")
        if dataset["source"] == "download" and not dataset["files"]:
            raise InputError(f"{source}: datasets.{name}", "source download needs files",
                             "list the files (url, filename, sha256, size) under datasets.NAME.files")
    check_checkpoint_download(config["model"], f"{source}: model")
    check_downstream(config, source)
    resolve_reference(config, source)
    if config["reference"]["medians"] == "corpus" or config["reference"]["token_dictionary"] == "corpus":
        if "corpus" not in config["datasets"]:
            raise InputError(
                f"{source}: reference",
                "medians or token_dictionary 'corpus' need a datasets.corpus entry",
                "add datasets.corpus or point reference.* at geneformer_v1 or a file",
            )
    for name in experiments_of_real_data(config):
        if (caveat := embedded_model_caveat(config, name)) is not None:
            log.warning("%s: experiments.%s: %s", source, name, caveat)
    return config


def experiments_of_real_data(config: dict[str, Any]) -> list[str]:
    """Experiments whose cells are not simulated while the pretraining corpus is: the simulator's
    vocabulary and the model pretrained on its cells know nothing of them."""
    corpus = config["datasets"].get("corpus")
    if corpus is None or corpus["source"] != "simulated":
        return []
    return [name for name, experiment in config["experiments"].items()
            if config["datasets"][experiment["dataset"]]["source"] != "simulated"]


def resolve_reference(config: dict[str, Any], source: str) -> None:
    """Set `reference.*: auto` to `corpus` (the corpus's own genes and medians) unless an experiment's
    data is not simulated while the corpus is, then to Geneformer's published `geneformer_v1`; warn
    when the user chose `corpus` for such data."""
    real = experiments_of_real_data(config)
    for key in ("medians", "token_dictionary"):
        if config["reference"][key] == AUTO_REFERENCE:
            config["reference"][key] = "geneformer_v1" if real or "corpus" not in config["datasets"] else "corpus"
        elif config["reference"][key] == "corpus" and real:
            log.warning("%s: reference.%s is corpus, the simulated corpus's, so the real data of experiments %s "
                        "is tokenized against the simulator's genes; set it to auto or geneformer_v1 (or your "
                        "own file) for real data", source, key, ", ".join(real))


def embedded_model_caveat(config: dict[str, Any], experiment: str) -> str | None:
    """Why the experiment's "geneformer" rows say little of Geneformer (None when they can): its data is
    real but the model is the embedded default, pretrained on simulated cells."""
    model = config["model"]
    if model["checkpoint"] or model["download"] or experiment not in experiments_of_real_data(config):
        return None
    return ("the fine-tuned model is the embedded default, pretrained on the simulated corpus, not "
            "Geneformer: its rows test this workflow, not Geneformer, on your data; set model.checkpoint "
            "to Geneformer's published checkpoint (or your own) with reference.* geneformer_v1 (or its "
            "dictionaries)")


def drop_what_names_removed(config: dict[str, Any], datasets: list[str], experiments: list[str], source: str) -> None:
    """Quantization models, fine-tuned embeddings, the perturbation model and the embedded dataset that
    name a dataset or experiment the config removed (set to null) go with it, each named in a warning;
    a name that never existed is still refused by check_downstream."""
    dropped = []
    models = config["quantization"]["models"]
    for index, model in reversed(list(enumerate(models))):
        if model["experiment"] in experiments:
            dropped.append(f"quantization.models[{index}]")
            del models[index]
    embeddings, perturbation = config["embeddings"], config["perturbation"]
    if embeddings["finetuned"] and embeddings["finetuned"]["experiment"] in experiments:
        dropped.append("embeddings.finetuned")
        embeddings["finetuned"] = None
    if embeddings["dataset"] in datasets:
        dropped.append("embeddings.dataset")
        embeddings["dataset"] = None
    if perturbation["model"] and perturbation["model"]["experiment"] in experiments:
        dropped.append("perturbation.model")
        perturbation["model"] = None
    if dropped:
        log.warning("%s: removed (set to null): %s; the keys naming them are left out too: %s", source,
                    ", ".join(sorted(datasets + experiments)), ", ".join(sorted(dropped)))


def check_checkpoint_download(model: dict[str, Any], where: str) -> None:
    """A downloaded checkpoint is a complete save_pretrained directory, fetched at a fixed commit:
    a branch such as `main` moves, and the same config would fine-tune different weights."""
    download = model["download"]
    if not download:
        return
    if model["checkpoint"]:
        raise InputError(where, "checkpoint and download are both set",
                         "keep one: a local directory (checkpoint) or the files to fetch (download)")
    names = {entry["filename"] for entry in download.values()}
    if "config.json" not in names or not names & set(WEIGHT_FILES):
        raise InputError(f"{where}.download", f"has {sorted(names)}, not a loadable checkpoint",
                         f"list config.json and one of {list(WEIGHT_FILES)} (filename as Hugging Face names them)")
    for key, entry in download.items():
        match = HUGGINGFACE_REVISION.match(entry["url"])
        if match and not COMMIT.match(match["revision"]):
            raise InputError(f"{where}.download.{key}.url", f"names '{match['revision']}', a branch or tag that can move",
                             "put the 40-hex commit in its place (huggingface.co: the file's History page)")


def check_fold_model(config: dict[str, Any], model: dict[str, Any], folds: list[int], where: str) -> None:
    """A model named by experiment, method and fold(s) must be a fine-tuned cell classifier of this
    configuration (quantization, embeddings and perturbation read results/EXPERIMENT/METHOD/fold_K/model)."""
    experiment = config["experiments"].get(model["experiment"])
    if experiment is None or experiment["task"] != "cell_classification":
        raise InputError(f"{where}.experiment", f"'{model['experiment']}' is not a cell task here",
                         "name a cell_classification experiment of this configuration")
    method = experiment["methods"].get(model["method"])
    if method is None or method["kind"] != "finetune":
        raise InputError(f"{where}.method", f"'{model['method']}' is not a fine-tuned method of "
                         f"{model['experiment']}", "name a method of kind finetune")
    too_high = [fold for fold in folds if fold >= experiment["n_folds"]]
    if too_high:
        raise InputError(f"{where}.fold", f"{too_high} exceed the {experiment['n_folds']} folds of "
                         f"{model['experiment']}", f"use folds below {experiment['n_folds']}")


def check_downstream(config: dict[str, Any], source: str) -> None:
    """Quantization, embeddings and perturbation name models and datasets of this configuration."""
    quantization = config["quantization"]
    for index, model in enumerate(quantization["models"]):
        check_fold_model(config, model, quantization["folds"], f"{source}: quantization.models[{index}]")
    embeddings = config["embeddings"]
    if embeddings["dataset"] is not None:
        if embeddings["dataset"] not in config["datasets"] or not embeddings["label_column"]:
            raise InputError(f"{source}: embeddings", f"dataset '{embeddings['dataset']}' with label_column "
                             f"{embeddings['label_column']!r}", "name a dataset of datasets and its label column")
        if embeddings["finetuned"]:
            check_fold_model(config, embeddings["finetuned"], [embeddings["finetuned"]["fold"]],
                             f"{source}: embeddings.finetuned")
    perturbation = config["perturbation"]
    if perturbation["model"]:
        check_fold_model(config, perturbation["model"], [perturbation["model"]["fold"]], f"{source}: perturbation.model")
        if not perturbation["state_column"] or not perturbation["analyses"]:
            raise InputError(f"{source}: perturbation", "a model without state_column or analyses",
                             "name the obs column of the states and at least one analysis (start_state, direction)")


CELL_TASK_KINDS = ("finetune", "pca_rf", "logreg_hvg")
GENE_TASK_KINDS = ("finetune", "gene_pca_rf", "gene_stats_logreg")


def check_task_keys(config: dict[str, Any], name: str, where: str) -> None:
    """Keys and method kinds must fit the experiment's task (cells labelled by obs, or genes by a file)."""
    experiment = config["experiments"][name]
    if experiment["task"] == "cell_classification":
        if not experiment["label_column"]:
            raise InputError(where, "a cell_classification task needs label_column", "name the obs column of the labels")
        if experiment["gene_labels"] or experiment["n_training_cells"]:
            raise InputError(where, "gene_labels and n_training_cells are for gene_classification",
                             "remove them or set task: gene_classification")
        allowed = CELL_TASK_KINDS
    else:
        if not experiment["gene_labels"]:
            raise InputError(where, "a gene_classification task needs gene_labels",
                             f"give a TSV (ensembl_id, label) or '{truths.SIMULATED_LABELS}:<label set>'")
        if experiment["label_column"] or experiment["group_column"] or experiment["subset"]:
            raise InputError(where, "label_column, group_column and subset describe cells, not genes",
                             "remove them: gene labels come from gene_labels, folds split the genes")
        check_simulated_label_set(config, experiment, where)
        allowed = GENE_TASK_KINDS
        for method, entry in experiment["methods"].items():
            if entry["kind"] == "finetune" and method_settings(config, name, method, where)["finetuning"]["upsample"]:
                raise InputError(f"{where}.methods.{method}.finetuning.upsample",
                                 "upsampling resamples cells; it is not defined for gene classification",
                                 "set upsample: false (focal_alpha: balanced weights the gene classes)")
    for method, entry in experiment["methods"].items():
        if entry["kind"] not in allowed:
            raise InputError(f"{where}.methods.{method}.kind", f"'{entry['kind']}' does not fit task {experiment['task']}",
                             f"use one of {list(allowed)}")


def check_simulated_label_set(config: dict[str, Any], experiment: dict[str, Any], where: str) -> None:
    """gene_labels: simulated:<label set> must name a label set, for a simulated dataset, and the
    dataset the set is planted in where it is one dataset's (its genes carry the property nowhere else)."""
    label_set = truths.simulated_label_set(experiment["gene_labels"])
    if label_set is None:
        return
    key, dataset = f"{where}.gene_labels", experiment["dataset"]
    if label_set not in truths.GENE_LABEL_SETS:
        raise InputError(key, f"'{experiment['gene_labels']}' names no simulated label set",
                         f"use one of {[f'{truths.SIMULATED_LABELS}:{name}' for name in truths.GENE_LABEL_SETS]}")
    dataset_source = config["datasets"][dataset]["source"]
    if dataset_source != "simulated":
        raise InputError(key, f"simulated labels name the simulator's genes, but dataset '{dataset}' is "
                         f"{dataset_source}", "give a gene label TSV for real data")
    planted_in = truths.GENE_LABEL_SETS[label_set].dataset
    if planted_in not in (None, dataset):
        raise InputError(key, f"label set '{label_set}' is planted in dataset '{planted_in}', not in '{dataset}'",
                         f"set dataset: {planted_in} (with datasets.{planted_in}.source: simulated)")


def method_settings(config: dict[str, Any], experiment: str, method: str, source: str = "config") -> dict[str, Any]:
    """The method's entry, with fine-tuning settings = global finetuning + the method's overrides."""
    entry = copy.deepcopy(config["experiments"][experiment]["methods"][method])
    if entry["kind"] == "finetune":
        merged = deep_merge(config["finetuning"], entry.get("finetuning", {}))
        check_section(merged, load_schema()["definitions"]["finetuning"],
                      f"{source}: experiments.{experiment}.methods.{method}.finetuning",
                      "use the keys and types of the top-level finetuning section")
        if merged["head_only_epochs"] > merged["epochs"]:
            raise InputError(
                f"{source}: experiments.{experiment}.methods.{method}.finetuning.head_only_epochs",
                f"{merged['head_only_epochs']} head-only epochs > {merged['epochs']} epochs",
                "use head_only_epochs = epochs for linear probing, fewer for gradual unfreezing",
            )
        entry["finetuning"] = merged
    elif entry["kind"] in config["baselines"]:
        entry["baseline"] = config["baselines"][entry["kind"]]
    return entry


def load_config(*paths: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read YAML files in order (later ones override), apply overrides, validate (for tests and CLIs)."""
    config: dict[str, Any] = {}
    for path in paths:
        config = deep_merge(config, yaml.safe_load(Path(path).read_text()) or {})
    config = deep_merge(config, overrides or {})
    return validate_config(config, source=" + ".join(str(p) for p in paths) or "config")
