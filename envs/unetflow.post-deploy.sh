#!/usr/bin/env bash
# Snakemake runs this once after creating the environment, from the workflow's working directory.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
