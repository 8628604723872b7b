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

test: setup lint  ## lint and formatting checks, then the test suite (CPU, a few minutes)
	. $(BIN)/activate && pytest

lint: setup  ## snakemake --lint and snakefmt (CI runs both through `make test`)
	. $(BIN)/activate && snakemake --lint && snakefmt --check Snakefile rules/

report: setup  ## HTML report of the finished run's tables and figures
	. $(BIN)/activate && snakemake --report report.html

rulegraph: setup  ## regenerate the README's DAG picture
	. $(BIN)/activate && snakemake --rulegraph | python -m workflow_scripts.rulegraph docs/rulegraph.png

lock:  ## re-pin requirements.lock from a fresh install of pyproject.toml
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install --quiet ".[test,bench]"
	/tmp/lock-venv/bin/pip freeze --exclude-editable | grep -v geneformer-workflow > requirements.lock

# Conda environments for `snakemake --sdm conda` (envs/README.md): each envs/NAME.yaml is locked into
# envs/NAME.conda-lock.yml, rendered into the explicit pin file Snakemake installs from, and the pin
# file's pip lines (which conda skips) go into the post-deploy script Snakemake runs after it.
# Needs conda-lock and access to conda-forge and PyPI.
CONDA_ENVS := $(basename $(wildcard envs/*.yaml))
CONDA_PLATFORM := linux-64

CONDA_LOCKED := $(foreach env,$(CONDA_ENVS),\
	$(env).conda-lock.yml $(env).$(CONDA_PLATFORM).pin.txt $(env).post-deploy.sh)

.PHONY: conda-lock

conda-lock: $(CONDA_LOCKED)  ## lock envs/*.yaml into the pin files Snakemake installs (online only)

envs/%.conda-lock.yml: envs/%.yaml
	conda-lock lock -f $< -p $(CONDA_PLATFORM) --lockfile $@

envs/%.$(CONDA_PLATFORM).pin.txt: envs/%.conda-lock.yml
	conda-lock render -k explicit -p $(CONDA_PLATFORM) --filename-template 'envs/$*.{platform}.pin.txt' $<

envs/%.post-deploy.sh: envs/%.$(CONDA_PLATFORM).pin.txt envs/post-deploy.sh.in
	{ cat envs/post-deploy.sh.in && sed -n '/^# pip /p' $<; } > $@.tmp && mv $@.tmp $@
