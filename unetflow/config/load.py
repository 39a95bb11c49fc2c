"""Loading a configuration: config files merged over the defaults as Snakemake merges them, then checked.

The Snakefile and the `unetflow` CLI both load a configuration through `merge_config` and `load_config`, so
a step run by hand sees the same values as the same step in the workflow.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unetflow.config.messages import config_error
from unetflow.config.model import Config
from unetflow.errors import InputError


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` merged into `base` as Snakemake merges a --configfile into config.yaml, except volumes.

    Sections merge key by key; `volumes` of the override replace the base's (a user's volumes are the run's
    only ones), and with them the base's `split`, which names the base's volumes (none, unless the
    override gives one). The Snakefile applies this to Snakemake's own merge (idempotent), the CLI to its
    files.
    """
    merged = _deep_merge(copy.deepcopy(dict(base)), override)
    if "volumes" in override:
        merged["volumes"] = copy.deepcopy(override["volumes"])
        merged["split"] = copy.deepcopy(override.get("split"))
    return merged


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(values: Mapping[str, Any], *, origin: str = "config") -> Config:
    """Validate a merged config mapping; errors name each key (prefixed `origin`) and what to do."""
    if "volumes" in values and not values["volumes"]:
        raise InputError(f"{origin} volumes: names no volume; give at least one (see config.yaml)")
    try:
        return Config.model_validate(dict(values))
    except ValidationError as error:
        raise config_error(error, values, prefix="", origin=origin) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping; a missing, unreadable or non-mapping file is an InputError."""
    target = Path(path)
    if not target.is_file():
        raise InputError(f"config file {target} does not exist; check the path")
    try:
        values = yaml.safe_load(target.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"config file {target} cannot be read as YAML ({error}); fix its syntax") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"config file {target} holds a {type(values).__name__}, not a mapping of sections")
    return values


def load_config_files(paths: Sequence[str | Path]) -> Config:
    """The model's defaults with each file merged in turn (as `snakemake --configfile a.yaml b.yaml`)."""
    merged: dict[str, Any] = Config().dump()
    for path in paths:
        merged = merge_config(merged, read_config_file(path))
    names = ", ".join(str(p) for p in paths) or "the defaults"
    return load_config(merged, origin=f"config ({names})")
