"""Errors a user can act on: each names the file or key, the problem and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any


class InputError(ValueError):
    """Bad user input (a file, a config value); the message says which one, what is wrong and the fix."""


def check_known_keys(options: Iterable[str], dataclass_type: Any, *, section: str) -> None:
    """Refuse keys of a config section that are not fields of `dataclass_type`, listing the known ones."""
    known = {item.name for item in fields(dataclass_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"unknown {section} option(s) {', '.join(map(repr, unknown))}; remove or rename them "
            f"(known: {', '.join(sorted(known))})"
        )
