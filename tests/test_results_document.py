"""docs/results.md: every table of the run with its caption, its figures and the machine/time header."""

from __future__ import annotations

import json
import platform
import re

import pytest
from conftest import REPO, preset_config

from workflow_scripts.aggregate.results_document import (
    DocumentContents,
    ResultsDocument,
    write_results_document,
)
from workflow_scripts.cli import main
from workflow_scripts.core.errors import InputError


def section(title, table, caption, figures=(), **wildcards):
    return {"title": title, "table": table, "caption": caption, "wildcards": wildcards,
            "figures": [{"path": path, "caption": figure_caption} for path, figure_caption in figures]}


@pytest.fixture
def run_files(tmp_path, monkeypatch):
    """A workdir with small tables, captions and figures as a run leaves them; returns the contents."""
    monkeypatch.chdir(tmp_path)
    files = {
        "report/all_experiments.rst": "Every experiment and method, mean ± SD over folds.\n",
        "report/summary.rst": "Metrics of experiment {{ snakemake.wildcards.experiment }}, with ``n_folds``.\n",
        "report/roc.rst": "Mean ROC of {{snakemake.wildcards.experiment}}.\n",
        "report/runtime.rst": "Where the time went.\n",
        "results/tables/all_experiments.md": "## All experiments: mean ± SD over folds\n\n| experiment |\n|---|\n| toy |\n",
        "results/toy/summary.md": "## toy: mean ± SD over folds\n\n| method | accuracy |\n|---|---|\n| m | 0.912 ± 0.027 |\n",
        "results/tables/runtime.csv": "rule,wildcards,seconds\npretrain,,12.500\nfinetune_fold,a|b,3.250\n",
        "results/toy/figures/roc.png": "png",
        "results/figures/runtime.png": "png",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return {
        "sections": [
            section("All experiments", "results/tables/all_experiments.md", "report/all_experiments.rst"),
            section("Experiment toy", "results/toy/summary.md", "report/summary.rst",
                    [("results/toy/figures/roc.png", "report/roc.rst")], experiment="toy"),
            section("Runtime", "results/tables/runtime.csv", "report/runtime.rst",
                    [("results/figures/runtime.png", None)]),
        ],
        "config_files": ["config/config.yaml", "config/test.yaml"],
    }


def test_document_lists_every_table_with_its_caption_figures_and_the_machine_header(run_files, tmp_path):
    write_results_document(DocumentContents.from_config(run_files), "docs/results.md")
    document = (tmp_path / "docs/results.md").read_text()
    titles = re.findall(r"^## (.+)$", document, re.M)
    assert titles == ["All experiments", "Experiment toy", "Runtime"]  # the sections' order
    assert "Every experiment and method, mean ± SD over folds." in document
    assert "Metrics of experiment toy, with `n_folds`." in document and "Mean ROC of toy." in document
    assert "### toy: mean ± SD over folds" in document and "| m | 0.912 ± 0.027 |" in document  # headings demoted
    assert "| rule | wildcards | seconds |" in document
    assert "| finetune_fold | a\\|b | 3.250 |" in document  # CSV values as written, pipes escaped
    assert "(../results/toy/figures/roc.png)" in document and "(../results/figures/runtime.png)" in document
    assert "[`results/tables/runtime.csv`](../results/tables/runtime.csv)" in document
    header = dict(re.findall(r"^\| ([^|]+) \| (.+) \|$", document.split("## ")[0], re.M))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", header["written (UTC)"])
    assert header["Python"] == platform.python_version() and header["platform"] == platform.platform()
    assert {"CPU", "cores", "torch"} <= set(header)
    assert header["config files (later ones win)"] == "`config/config.yaml`, `config/test.yaml`"


def test_a_missing_table_stops_the_document_naming_it(run_files, tmp_path):
    (tmp_path / "results/toy/summary.md").unlink()
    with pytest.raises(InputError, match="results/toy/summary.md: is missing") as error:
        write_results_document(DocumentContents.from_config(run_files), "docs/results.md")
    assert "fix:" in str(error.value)
    assert not (tmp_path / "docs").exists()  # nothing written


def test_a_caption_wildcard_the_section_lacks_is_refused(run_files):
    run_files["sections"][1]["wildcards"] = {}
    with pytest.raises(InputError, match="report/summary.rst: names the wildcard 'experiment'"):
        write_results_document(DocumentContents.from_config(run_files), "docs/results.md")


def test_the_command_refuses_a_misspelt_section_key(run_files, tmp_path, capsys):
    run_files["sections"][0]["captions"] = run_files["sections"][0].pop("caption")
    code = main(["results-document", "--contents", json.dumps(run_files), "--output-md", "docs/results.md"])
    assert code == 2
    assert "--contents.sections[0].captions: is not a setting of Section" in capsys.readouterr().err
    assert not (tmp_path / "docs").exists()


def test_sections_follow_the_configuration_and_end_with_the_runtime(tmp_path, monkeypatch):
    config = preset_config()
    sections = ResultsDocument(config, quantized=True, embedded=False, perturbation_figures=["results/figures/p.png"],
                               planted_truth=False)
    titles = [entry.title for entry in sections.sections]
    assert titles == ["All experiments", "Reported vs reproduced",
                      *(f"Experiment {name}" for name in config["experiments"]),
                      "Quantization", "In silico perturbation", "Runtime"]
    assert "results/tables/embedding_scores.csv" not in sections.tables()
    assert sections.tables()[-1] == "results/tables/runtime.csv"
    with_reference = {name for name, entry in config["experiments"].items() if entry["reference_method"]}
    assert with_reference and {path.split("/")[1] for path in sections.figures()
                               if path.endswith("relative_change.png")} == with_reference
    assert all((REPO / caption).is_file() for caption in sections.captions())  # the report's own captions
    monkeypatch.chdir(tmp_path)
    contents = json.loads(sections.contents(["/elsewhere/extra.yaml", "config/config.yaml"], ["/elsewhere/extra.yaml"]))
    assert contents["config_files"] == ["config/config.yaml", "/elsewhere/extra.yaml"]  # merge order
