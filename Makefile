# Two commands on a fresh machine: `make run` (the whole workflow on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: run test lint dry-run clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[workflow,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

dry-run: $(STAMP)
	$(BIN)/snakemake -n --profile profiles/local
	$(BIN)/snakemake -n --profile profiles/slurm

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf results data/raw .snakemake
