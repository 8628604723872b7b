"""Cross-experiment tables: every experiment's mean ± SD in one table, and every number the
source documents report beside this run's figure for the same cell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ..core.errors import InputError
from ..core.outputs import atomic_path

METRICS = ("accuracy", "macro_f1", "weighted_f1", "macro_auc")


def _write_table(table: pd.DataFrame, output_csv: str | Path, output_md: str | Path, title: str) -> None:
    with atomic_path(output_csv) as temporary:
        table.to_csv(temporary, index=False)
    with atomic_path(output_md) as temporary:
        temporary.write_text(f"## {title}\n\n{table.to_markdown(index=False)}\n")


def collect_experiments(summaries: list[tuple[str, str, str | Path]], output_csv: str | Path,
                        output_md: str | Path) -> None:
    """all_experiments: one row per experiment x method, each metric as 'mean ± SD', and n folds."""
    rows = []
    for experiment, task, path in summaries:
        summary = pd.read_csv(path)
        for record in summary.to_dict("records"):
            rows.append({"experiment": experiment, "task": task, "method": record["method"],
                         **{metric: record[metric] for metric in METRICS}, "n_folds": record["n_folds"]})
    _write_table(pd.DataFrame(rows), output_csv, output_md, "All experiments: mean ± SD over folds")


def _reproduced(row: dict, summaries: dict[str, pd.DataFrame], per_class: dict[str, pd.DataFrame]) -> str:
    """This run's figure for the cell a reported number describes, or why there is none."""
    experiment = row.get("experiment")
    if experiment not in summaries:
        return "not run in this configuration"
    if row.get("class"):
        table = per_class[experiment]
        match = table[(table["method"] == row["method"]) & (table["class"] == row["class"])]
        column = f"{row['metric']}_mean"
    else:
        table = summaries[experiment]
        match = table[table["method"] == row["method"]]
        column = row["metric"]
    if match.empty or column not in match:
        return "not run in this configuration"
    value = match.iloc[0][column]
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _quantization_figure(row: dict, quantization: pd.DataFrame | None) -> str:
    """int8 against fp32 for the model a quantization row names: weights size, or the change of batch
    latency on the CPU at the largest batch size measured (means over the quantized folds)."""
    if quantization is None:
        return "not run in this configuration"
    runs = quantization[(quantization["experiment"] == row.get("experiment"))
                        & (quantization["method"] == row.get("method")) & (quantization["device"] == "cpu")]
    int8 = runs[runs["variant"] == "int8_dynamic"]
    if int8.empty or not (runs["variant"] == "fp32").any():
        return "not run in this configuration"
    if row["quantization"] == "size":
        fp32_mb, int8_mb = runs[runs["variant"] == "fp32"]["size_mb"].mean(), int8["size_mb"].mean()
        return f"{fp32_mb:.2f} MB -> {int8_mb:.2f} MB ({100 * (1 - int8_mb / fp32_mb):.0f}% smaller)"
    largest = int8[int8["batch_size"] == int8["batch_size"].max()]
    change = largest["latency_change_vs_fp32_pct"].mean()
    return (f"{abs(change):.0f}% {'less' if change < 0 else 'more'} (CPU, batch {int(largest['batch_size'].iloc[0])}, "
            f"{largest['fold'].nunique()} fold(s))")


def compare_with_reported(reported_yaml: str | Path, summaries: list[tuple[str, str | Path, str | Path]],
                          data_sources: dict[str, str], output_csv: str | Path, output_md: str | Path,
                          quantization_csv: str | Path | None = None) -> None:
    """reported_vs_reproduced: each row of config/reported.yaml once, with this run's figure beside it.

    summaries: (experiment, summary.csv, per_class.csv); data_sources: experiment -> simulated/real;
    quantization_csv: results/tables/quantization.csv, for the rows with a `quantization` key.
    """
    reported = yaml.safe_load(Path(reported_yaml).read_text())
    required = {"document", "source", "quantity", "reported"}
    for index, row in enumerate(reported):
        if not required <= set(row):
            raise InputError(f"{reported_yaml}: entry {index}", f"missing {sorted(required - set(row))}",
                             "give every reported number its document, source, quantity and value")
    summary_tables = {experiment: pd.read_csv(path) for experiment, path, _ in summaries}
    per_class_tables = {experiment: pd.read_csv(path) for experiment, _, path in summaries}
    quantization = pd.read_csv(quantization_csv) if quantization_csv else None
    table = pd.DataFrame([{
        "document": row["document"], "source": row["source"], "quantity": row["quantity"],
        "reported": row["reported"],
        "reproduced": (_quantization_figure(row, quantization) if row.get("quantization")
                       else _reproduced(row, summary_tables, per_class_tables)),
        "data": data_sources.get(row.get("experiment"), "-"),
        "experiment": row.get("experiment", "-"), "method": row.get("method", "-"),
        "metric": (f"{row['metric']} ({row['class']})" if row.get("class")
                   else f"int8 vs fp32 {row['quantization']}" if row.get("quantization") else row.get("metric", "-")),
    } for row in reported])
    _write_table(table, output_csv, output_md, "Reported in the source documents vs reproduced here")
