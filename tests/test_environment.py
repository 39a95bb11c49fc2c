"""One environment story: every package the code imports is declared, and conda's pins match pip's ranges."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"dask-core": "dask", "matplotlib-base": "matplotlib", "pytorch": "torch"}
"""conda-forge package names that differ from the PyPI distribution of the same project."""


def declared() -> dict[str, SpecifierSet]:
    """Every requirement of pyproject.toml (core and extras) by canonical name, with its version range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    found: dict[str, SpecifierSet] = {}
    for line in lines:
        requirement = Requirement(line)
        if requirement.name == "unetflow":
            continue
        found[canonicalize_name(requirement.name)] = requirement.specifier
    return found


def conda_pins() -> dict[str, str]:
    """envs/unetflow.yaml's pins by canonical PyPI name (python and pip left out)."""
    env = yaml.safe_load((ROOT / "envs" / "unetflow.yaml").read_text())
    pins = {}
    for entry in env["dependencies"]:
        name, _, version = str(entry).partition("=")
        name = CONDA_NAMES.get(name, name)
        if name not in ("python", "pip"):
            pins[canonicalize_name(name)] = version
    return pins


def imported_modules() -> set[str]:
    """Top-level modules the package imports (anywhere in a module, lazy imports included)."""
    modules = set()
    for path in (ROOT / "unetflow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"unetflow", "__future__"}


def test_every_imported_package_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    requirements = declared()
    missing = {
        module: distributions.get(module)
        for module in imported_modules()
        if not any(canonicalize_name(d) in requirements for d in distributions.get(module, []))
    }
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_conda_pins_every_requirement_within_its_pip_range() -> None:
    pins, requirements = conda_pins(), declared()
    # the tools around the rules, not inside their environment: Snakemake (a script's preamble adds its own
    # installation to sys.path), its SLURM plugin, and the lint and test tools (py-ctcmetrics: the Cell
    # Tracking Challenge's own measures, which the tests check SEG against)
    development = {"snakemake", "snakemake-executor-plugin-slurm", "jsonschema", "pytest", "ruff", "snakefmt"}
    development |= {"psutil", "import-linter", "py-ctcmetrics", "moto", "pytest-xdist"}
    development |= {"sphinx", "myst-parser", "pydata-sphinx-theme"}
    assert set(requirements) - development - set(pins) == set(), "declared in pyproject.toml, not in envs/"
    assert set(pins) - set(requirements) == set(), "pinned in envs/ but not declared in pyproject.toml"
    for name, version in pins.items():
        assert re.fullmatch(r"[0-9][0-9a-z.]*", version), f"{name}: pin an exact version, not {version!r}"
        if name in requirements:
            wanted = requirements[name]
            assert version in wanted, f"envs/ pins {name} {version}, pyproject.toml asks {wanted}"


def test_torch_is_the_same_release_on_both_routes() -> None:
    assert str(declared()["torch"]) == "==2.13.0"
    assert conda_pins()["torch"] == "2.13.0"
