"""Pretraining ablation: model and masked-LM variants, each pretrained on the same corpus with the same
budget, fine-tuned with one recipe on the same folds of a cell experiment, and compared.

`variant_settings` and `downstream_finetuning` resolve the config (`ablation`) when the workflow is
read; `collect_ablation` writes the table and figure from each variant's pretraining_summary.json
(parameter count, held-out MLM loss, training seconds: pretrain.py writes it) and the fine-tuned
folds' scores (evaluate.summarize_experiment's summary.csv, one "method" per variant).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.config import (
    check_fold_model,
    check_section,
    deep_merge,
    load_schema,
    method_settings,
)
from ..core.errors import InputError
from ..core.outputs import atomic_path
from ..pretrain.settings import CHECKPOINT_KEYS, model_to_pretrain

SUMMARY_FILE = "pretraining_summary.json"  # as pretrain.SUMMARY_FILE (not imported: that module needs torch)


FIX = "use the keys and types of the top-level section of the same name"


def variant_settings(config: dict[str, Any], variant: str) -> dict[str, dict[str, Any]]:
    """A variant's `model` and `pretraining`: the run's sections, then ablation.pretraining (the budget
    every variant shares), then the variant's own keys; checked against the schema."""
    entry = config["ablation"]["variants"][variant]
    where = f"config: ablation.variants.{variant}"
    given = [key for key in CHECKPOINT_KEYS if key in entry.get("model", {})]
    if given:
        raise InputError(f"{where}.model", f"sets {given}, but ablation variants are pretrained here",
                         "remove them (fine-tune a given checkpoint with model.checkpoint instead)")
    model = deep_merge(model_to_pretrain(config["model"]), entry.get("model", {}))
    pretraining = deep_merge(deep_merge(config["pretraining"], config["ablation"]["pretraining"]),
                             entry.get("pretraining", {}))
    properties = load_schema()["properties"]
    check_section(model, properties["model"], f"{where}.model", FIX)
    check_section(pretraining, properties["pretraining"], f"{where}.pretraining", FIX)
    if model["architecture"] == "bert" and (model["embedding_size"] is not None or model["share_layers"]):
        raise InputError(f"{where}.model", "embedding_size and share_layers are ALBERT options",
                         "add architecture: albert")
    return {"model": model, "pretraining": pretraining}


def evaluation_masking(config: dict[str, Any]) -> dict[str, Any]:
    """The masking every variant's held-out loss uses: the ablation's shared masking, so that the
    variants are scored on the same corrupted cells whatever they trained with."""
    return deep_merge(config["pretraining"], config["ablation"]["pretraining"])["masking"]


def downstream_finetuning(config: dict[str, Any], variants: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The fine-tuning settings every variant is scored with: the downstream method's, with
    ablation.downstream.finetuning's keys; refused where a variant cannot take them."""
    downstream = config["ablation"]["downstream"]
    where = "config: ablation.downstream"
    if downstream["experiment"] not in config["experiments"]:
        raise InputError(f"{where}.experiment", f"'{downstream['experiment']}' is not an experiment of this "
                         "configuration", f"name one of {sorted(config['experiments'])}")
    check_fold_model(config, downstream, list(range(downstream["n_folds"])), where)
    finetuning = deep_merge(method_settings(config, downstream["experiment"], downstream["method"])["finetuning"],
                            downstream["finetuning"])
    check_section(finetuning, load_schema()["definitions"]["finetuning"], f"{where}.finetuning", FIX)
    shared = [name for name, settings in variants.items() if settings["model"]["share_layers"]]
    if shared and finetuning["freeze_layers"]:
        raise InputError(f"{where}.finetuning.freeze_layers", f"is {finetuning['freeze_layers']}, but variants "
                         f"{shared} share one set of layer weights, whose first layers cannot be frozen alone",
                         "set ablation.downstream.finetuning.freeze_layers: 0 (every variant, for one recipe)")
    return finetuning


def masking_label(masking: dict[str, Any]) -> str:
    """e.g. 'random 15% (80/10/10)', 'pathway 15% (80/10/10)', 'random 30%→10% (80/2/18)'."""
    mix = "/".join(f"{100 * value:.0f}" for value in (
        masking["mask_token_fraction"], masking["random_token_fraction"],
        1 - masking["mask_token_fraction"] - masking["random_token_fraction"]))
    rate = (f"{100 * masking['mask_probability']:.0f}%" if masking["schedule"] == "constant"
            else f"{100 * masking['start_probability']:.0f}%→{100 * masking['end_probability']:.0f}%")
    return f"{masking['strategy']} {rate} ({mix})"


def collect_ablation(variants: list, summary_csv: str | Path, downstream: str, output_csv: str | Path,
                     output_png: str | Path) -> None:
    """One row per variant ([name, pretrained model directory] each, in order): architecture,
    parameters, held-out MLM loss, pretraining seconds, and the downstream macro F1 (mean and SD over
    folds) from summary_csv; `downstream` names the F1 columns (e.g. pancreas_macro_f1_mean)."""
    if not variants:
        raise InputError("ablation.variants", "is empty", "list at least one variant (e.g. baseline: {})")
    scores = pd.read_csv(summary_csv).set_index("method")
    rows = []
    for name, directory in variants:
        summary_path, config_path = Path(directory) / SUMMARY_FILE, Path(directory) / "config.json"
        if not summary_path.is_file() or not config_path.is_file():
            raise InputError(str(directory), f"lacks {SUMMARY_FILE} or config.json",
                             "re-run this variant's pretraining")
        if name not in scores.index:
            raise InputError(str(summary_csv), f"has no scores for variant '{name}'", "re-run the ablation summary")
        summary = json.loads(summary_path.read_text())
        model_config = json.loads(config_path.read_text())
        albert = model_config["model_type"] == "albert"
        rows.append({
            "variant": name,
            "architecture": summary["architecture"],
            "embedding_size": model_config["embedding_size"] if albert else model_config["hidden_size"],
            "hidden_size": model_config["hidden_size"],
            "shared_layers": albert and model_config["num_hidden_groups"] < model_config["num_hidden_layers"],
            "masking": masking_label(summary["masking"]),
            "parameters": summary["parameters"],
            "encoder_parameters": summary["encoder_parameters"],
            "heldout_mlm_loss": summary["heldout_mlm_loss"],
            "pretrain_seconds": summary["pretrain_seconds"],
            "pretrain_steps": summary["steps"],
            f"{downstream}_macro_f1_mean": scores.loc[name, "macro_f1_mean"],
            f"{downstream}_macro_f1_sd": scores.loc[name, "macro_f1_sd"],
            f"{downstream}_accuracy_mean": scores.loc[name, "accuracy_mean"],
            "n_folds": int(scores.loc[name, "n_folds"]),
        })
    table = pd.DataFrame(rows)
    with atomic_path(output_csv) as temporary:
        table.to_csv(temporary, index=False, float_format="%.6g")
    figure = plot_ablation(table, downstream)
    with atomic_path(output_png) as temporary:
        figure.savefig(temporary, dpi=150, format="png", bbox_inches="tight")


def plot_ablation(table: pd.DataFrame, downstream: str):
    """Four panels, one bar per variant: parameters, pretraining seconds, held-out MLM loss, and the
    downstream macro F1 with its SD over folds."""
    from matplotlib.figure import Figure

    panels = [("parameters", None, "parameters (masked LM, tied and shared weights once)"),
              ("pretrain_seconds", None, "pretraining seconds (same budget)"),
              ("heldout_mlm_loss", None, "held-out MLM loss (same masked cells)"),
              (f"{downstream}_macro_f1_mean", f"{downstream}_macro_f1_sd", f"{downstream} macro F1 (mean ± SD)")]
    figure = Figure(figsize=(15, 0.45 * len(table) + 1.8), layout="constrained")
    positions = list(range(len(table)))[::-1]
    for axis, (column, error, title) in zip(figure.subplots(1, len(panels), sharey=True), panels):
        axis.barh(positions, table[column], xerr=None if error is None else table[error].fillna(0),
                  color="tab:blue", alpha=0.8, capsize=3)
        ends = table[column] + (0 if error is None else table[error].fillna(0))  # labels beside the error bars
        for position, value, end in zip(positions, table[column], ends):
            axis.annotate(f" {value:,.0f}" if column == "parameters" else f" {value:.3g}", (end, position),
                          va="center", fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.set_xlim(0, ends.max() * 1.35)
    figure.axes[0].set_yticks(positions, [f"{row.variant}\n{row.masking}" for row in table.itertuples()], fontsize=8)
    figure.suptitle(f"Pretraining ablation: {len(table)} variants, {table['n_folds'].iloc[0]} folds each")
    return figure
