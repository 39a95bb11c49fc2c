# Two commands on a fresh machine: `make run` (the whole workflow on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: run test lint docs dry-run clean setup slurm-profile slurm-up slurm-down test-slurm

setup: $(STAMP)

# pip compiles every installed module to bytecode: where PYTHONDONTWRITEBYTECODE is set (as on the machines
# here), a module without it is compiled again by every process that imports it (--no-compile made an
# import of torch and the data step 6.4 s of CPU against 3.6 s, and `make test` slower).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[workflow,dev,docs]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint
	$(BIN)/lint-imports

# The documentation site (docs/, Sphinx with MyST Markdown) at docs/_build/html/index.html; warnings are
# errors, so a broken link, reference or page fails the build (make test builds it too).
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

dry-run: $(STAMP)
	$(BIN)/snakemake -n --profile profiles/local
	$(BIN)/snakemake -n --profile profiles/slurm

# -rs prints why a test was skipped (e.g. tests/test_slurm.py where no SLURM test cluster can be made);
# --durations lists the slowest tests, to keep `make test` under 12 minutes. Workers run whole test
# files side by side (a file's fixtures are built once, on its worker): much of the suite waits on
# Snakemake runs and SLURM jobs. Files start in collection order (--no-loadscope-reorder), which
# tests/conftest.py begins with the longest. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 3
test: lint docs
	$(BIN)/python -m pytest -q -rs --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# A one-node SLURM test cluster on this machine (root, Debian/Ubuntu: installs slurm-wlm and munge with apt).
slurm-up:
	tests/slurm/setup.sh

slurm-down:
	tests/slurm/stop.sh

# Only the tests of the profile slurm against that cluster (part of `make test` when run as root).
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests/test_slurm.py

# The Snakemake profile `slurm` (unetflow/profile_templates/slurm) into ~/.config/snakemake/slurm, for
# `snakemake --profile slurm`. An existing one is left as it is; to replace it (the old one is kept beside
# it): $(BIN)/unetflow install-profile slurm --force
slurm-profile: $(STAMP)
	$(BIN)/unetflow install-profile slurm

clean:
	rm -rf results data/raw .snakemake docs/_build
