"""Snakemake profiles that ship with the package, installed into the folder where Snakemake looks for them.

`snakemake --profile slurm` finds a profile by name in Snakemake's user profile folder (platformdirs'
user_config_dir of "snakemake": ~/.config/snakemake, or $XDG_CONFIG_HOME/snakemake, on Linux). The
templates live in the package (`unetflow/profile_templates/<name>/`), so an installed unetflow can write
them there; an existing profile is never overwritten unless asked to, and then kept beside it.
"""

from __future__ import annotations

import os
import shutil
import time
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

import platformdirs

from unetflow.atomic import atomic_path
from unetflow.errors import InputError

TEMPLATES = "profile_templates"


def template_names() -> list[str]:
    """Names of the profile templates in the package (folders of `unetflow/profile_templates/`)."""
    return sorted(entry.name for entry in files("unetflow").joinpath(TEMPLATES).iterdir() if entry.is_dir())


def template(name: str) -> Traversable:
    """The folder of one profile template in the package; an InputError names the known ones."""
    if name not in template_names():
        raise InputError(
            f"no Snakemake profile template named {name!r} in unetflow; "
            f"use one of: {', '.join(template_names())}"
        )
    return files("unetflow").joinpath(TEMPLATES, name)


def user_profiles_dir() -> Path:
    """The folder in which Snakemake looks up a profile given by name (the same platformdirs call)."""
    return Path(platformdirs.user_config_dir("snakemake", "snakemake"))


def _copy_tree(source: Traversable, target: Path) -> None:
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.is_dir():
            _copy_tree(entry, target / entry.name)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())


class Installed(NamedTuple):
    """Where a profile was installed, and where the profile it replaced was moved (None if there was none)."""

    path: Path
    previous: Path | None


def install_profile(
    name: str, *, profiles_dir: str | os.PathLike[str] | None = None, force: bool = False
) -> Installed:
    """Write the template `name` to `<profiles_dir>/<name>` (default: Snakemake's user profile folder).

    An existing profile there is left as it is (InputError saying how to compare and replace it) unless
    `force`, which moves it aside to `<name>.old-<time>` once the new one is written.
    """
    source = template(name)
    target = Path(profiles_dir) if profiles_dir is not None else user_profiles_dir()
    target = target / name
    if (target.exists() or target.is_symlink()) and not force:
        where = "" if profiles_dir is None else f" --profiles-dir {target.parent}"
        raise InputError(
            f"a Snakemake profile {name!r} already exists at {target} and was left as it is; compare it with "
            f"this unetflow's template: diff -r {source} {target}; to replace it (the old one is kept beside "
            f"it as {name}.old-<time>): unetflow install-profile {name} --force{where}"
        )
    previous = None
    with atomic_path(target) as tmp:
        _copy_tree(source, tmp)
        if target.exists() or target.is_symlink():
            previous = _aside(target)
            shutil.move(target, previous)
    return Installed(target, previous)


def _aside(path: Path) -> Path:
    """A free name beside `path` for the profile a forced install replaces: <name>.old-<time>[-N]."""
    stem = f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, count = path.with_name(stem), 0
    while candidate.exists() or candidate.is_symlink():
        count += 1
        candidate = path.with_name(f"{stem}-{count}")
    return candidate
