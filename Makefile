# Entry points. `make run` and `make test` set up .venv first (pinned versions from requirements.lock).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup run test lint rulegraph report lock

$(BIN)/snakemake: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/snakemake

run: setup  ## the main job on the embedded default
	. $(BIN)/activate && snakemake --cores $(CORES)

test: setup  ## the test suite (CPU, a few minutes)
	. $(BIN)/activate && pytest

report: setup  ## HTML report of the finished run's tables and figures
	. $(BIN)/activate && snakemake --report report.html

rulegraph: setup  ## regenerate the README's DAG picture
	. $(BIN)/activate && snakemake --rulegraph | python -m workflow_scripts.rulegraph docs/rulegraph.png

lock:  ## re-pin requirements.lock from a fresh install of pyproject.toml
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install --quiet ".[test,bench]"
	/tmp/lock-venv/bin/pip freeze --exclude-editable | grep -v geneformer-workflow > requirements.lock
