"""docs/results.md: every table of the run with its report caption and its figures, in one page.

ResultsDocument lists the sections for the rule (rules/aggregate.smk), mirroring the `all` target;
write_results_document writes what their files hold, so no number is typed by hand. Captions are
the report's (report/*.rst): one text for both. The header says where and when the document was
written, and which config files the run merged.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib.metadata
import io
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.outputs import atomic_path
from ..core.settings import Settings

WILDCARD = re.compile(r"\{\{\s*snakemake\.wildcards\.(\w+)\s*\}\}")  # the report captions' one template use


@dataclasses.dataclass(frozen=True)
class Figure(Settings):
    path: str
    caption: str | None  # report/*.rst of the figure; None where the section's caption describes it


@dataclasses.dataclass(frozen=True)
class Section(Settings):
    title: str
    table: str | None  # results/.../*.md (headings one level down) or *.csv (as a table); None: figures only
    caption: str  # report/*.rst
    wildcards: dict[str, str]  # what the caption's {{ snakemake.wildcards.X }} stand for
    figures: list[Figure]


@dataclasses.dataclass(frozen=True)
class DocumentContents(Settings):
    sections: list[Section]
    config_files: list[str]  # in merge order: later files win


def section(title: str, table: str | None, caption: str, figures: tuple[tuple[str, str | None], ...] = (),
            **wildcards: str) -> Section:
    return Section(title, table, caption, wildcards, [Figure(path, figure_caption) for path, figure_caption in figures])


class ResultsDocument:
    """The sections of docs/results.md for one configuration, as rules/aggregate.smk reads them: the
    tables and figures of the `all` target, in the order of the Snakefile's list, then the runtime."""

    def __init__(self, config: dict[str, Any], quantized: bool, embedded: bool, perturbation_figures: list[str],
                 planted_truth: bool, swept: bool = False) -> None:
        self.sections = [
            section("All experiments", "results/tables/all_experiments.md", "report/all_experiments.rst"),
            section("Reported vs reproduced", "results/tables/reported_vs_reproduced.md",
                    "report/reported_vs_reproduced.rst"),
            *(self.experiment_section(name, entry) for name, entry in config["experiments"].items()),
        ]
        if quantized:
            self.sections.append(section("Quantization", "results/tables/quantization.csv", "report/quantization.rst",
                                         [("results/figures/quantization.png", None)]))
        if embedded:
            self.sections.append(section("Embeddings", "results/tables/embedding_scores.csv", "report/embeddings.rst",
                                         [("results/figures/embedding_umap.png", None)]))
        if perturbation_figures:
            self.sections.append(section("In silico perturbation",
                                         "results/tables/perturbation_truth.csv" if planted_truth else None,
                                         "report/perturbation.rst", [(path, None) for path in perturbation_figures]))
        if swept:
            self.sections.append(section("Training-size sweep", "results/tables/training_size.md",
                                         "report/training_size.rst", [("results/figures/training_size.png", None)]))
        self.sections.append(section("Runtime", "results/tables/runtime.csv", "report/runtime.rst",
                                     [("results/figures/runtime.png", None)]))

    @staticmethod
    def experiment_section(name: str, entry: dict[str, Any]) -> Section:
        plots = ["roc", "confusion", "per_class_f1", *(["relative_change"] if entry["reference_method"] else [])]
        return section(f"Experiment {name}", f"results/{name}/summary.md", "report/summary.rst",
                       [(f"results/{name}/figures/{plot}.png", f"report/{plot}.rst") for plot in plots],
                       experiment=name)

    def tables(self) -> list[str]:
        return [entry.table for entry in self.sections if entry.table]

    def figures(self) -> list[str]:
        return [figure.path for entry in self.sections for figure in entry.figures]

    def timed_outputs(self) -> list[str]:
        """What the runtime table waits for: the tables and figures of every other section (the runtime
        section is the last), so the benchmarks of all their jobs are written when it reads them."""
        return [path for entry in self.sections[:-1]
                for path in ([entry.table] if entry.table else []) + [figure.path for figure in entry.figures]]

    def captions(self) -> list[str]:
        """Every caption file, so that editing one rewrites the document."""
        figure_captions = {figure.caption for entry in self.sections for figure in entry.figures if figure.caption}
        return sorted({entry.caption for entry in self.sections} | figure_captions)

    def contents(self, loaded_configfiles: list, given_configfiles: list) -> str:
        """The --contents JSON; config files in merge order: the Snakefile's configfile, then each
        --configfile (Snakemake lists the given ones first), relative to the workdir where inside it."""
        given = [Path(path).absolute() for path in given_configfiles]
        loaded = [Path(path).absolute() for path in loaded_configfiles if Path(path).absolute() not in given]
        files = [os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
                 for path in dict.fromkeys(loaded + given)]
        return json.dumps(DocumentContents(self.sections, files).as_dict(), sort_keys=True)


def _require(path: str, what: str) -> Path:
    if not Path(path).is_file():
        raise InputError(path, f"is missing ({what} of docs/results.md)",
                         "run the workflow's `all` target, which writes it before the document")
    return Path(path)


def _read(path: str, what: str) -> str:
    return _require(path, what).read_text()


def caption_markdown(path: str, wildcards: dict[str, str]) -> str:
    """A report caption (reStructuredText, Snakemake's report template) as Markdown."""

    def value(match: re.Match) -> str:
        if match[1] not in wildcards:
            raise InputError(path, f"names the wildcard {match[1]!r}, which this section does not give",
                             "add it to the section's wildcards in rules/aggregate.smk")
        return wildcards[match[1]]

    text = WILDCARD.sub(value, _read(path, "a caption")).strip()
    return text.replace("``", "`")


def csv_markdown(path: str, text: str) -> str:
    """A CSV as a Markdown table, every value as the file writes it."""
    rows = [[value.replace("|", "\\|") for value in row] for row in csv.reader(io.StringIO(text))]
    if not rows:
        raise InputError(path, "is empty", "rerun the rule that writes it")
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def table_markdown(path: str) -> str:
    """A table file for the document: a CSV rendered, or Markdown with its headings one level down."""
    text = _read(path, "a table")
    if path.endswith(".csv"):
        return csv_markdown(path, text)
    return "\n".join("#" + line if line.startswith("#") else line for line in text.strip().splitlines())


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    """An installed distribution's version, without importing it (torch is not in every job's env)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed in this job's environment"


def machine_rows() -> list[tuple[str, str]]:
    """Where this job ran (on a cluster, the node of this job) and when it wrote the document."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("written (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} ({usable} usable by this job)"),
        ("platform", platform.platform()),
        ("Python", platform.python_version()),
        ("torch", package_version("torch")),
    ]


def _link(path: str, document_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), document_dir.absolute())).as_posix()


def render_document(contents: DocumentContents, document_dir: Path) -> str:
    """The Markdown of docs/results.md; links are relative to `document_dir`."""
    lines = ["# Results of this run", "",
             "Written by the `results_document` rule (`workflow_scripts/aggregate/results_document.py`) at the "
             "end of the run, from its tables and figures; the next run rewrites it. Captions are the "
             "report's (`report/*.rst`).", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in machine_rows()]
    lines += ["| config files (later ones win) | " + ", ".join(f"`{path}`" for path in contents.config_files) + " |",
              "", "Contents:", ""]
    lines += [f"- {section.title}" for section in contents.sections]
    for section in contents.sections:  # each block after a blank line
        lines += ["", f"## {section.title}", "", caption_markdown(section.caption, section.wildcards)]
        if section.table:
            lines += ["", f"Table: [`{section.table}`]({_link(section.table, document_dir)})", "",
                      table_markdown(section.table)]
        for figure in section.figures:
            lines += ["", f"![{_require(figure.path, 'a figure').stem}]({_link(figure.path, document_dir)})"]
            if figure.caption:
                lines += ["", caption_markdown(figure.caption, section.wildcards)]
    return "\n".join(lines) + "\n"


def write_results_document(contents: DocumentContents, output_md: str | Path) -> None:
    """Write docs/results.md from the sections' tables, captions and figures (all checked first)."""
    output_md = Path(output_md)
    text = render_document(contents, output_md.parent)
    with atomic_path(output_md) as temporary:
        temporary.write_text(text)
