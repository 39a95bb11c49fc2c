"""The wording of config errors: one InputError per invalid config, a line per key with its value and fix.

Pydantic reports where a value failed by its internal location (union tags included); `config_error` turns
that into the user's key path (`predict.cluster.walltime`), the value given and what to write instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from unetflow.config.patterns import PATTERN_HINTS
from unetflow.errors import InputError


def config_error(error: ValidationError, values: Any, *, prefix: str, origin: str = "config") -> InputError:
    """One InputError for a pydantic ValidationError: a line per offending key, its value and the fix."""
    lines: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    alternatives: set[str] = set()  # keys whose messages only say the value is not another union member
    for item in error.errors():
        path = _key_path(item["loc"], values)
        key = ".".join(([prefix] if prefix else []) + path)
        messages = lines.setdefault(key, [])
        message = _explain(item)
        if item["type"] in UNION_ALTERNATIVES:
            if messages:
                continue  # the list alternative of a value that was meant as text
            alternatives.add(key)
        else:
            alternatives.discard(key)
        if message not in messages:
            messages.append(message)
        shown.setdefault(key, _shown(item))
    for key in alternatives:  # a mapping meant as one split entry need not be told it is no list
        if any(other.startswith(f"{key}.") for other in lines):
            del lines[key]
    body = "; ".join(
        f"{key}: {' or '.join(messages)}{shown[key]}" if key else " ".join(messages)
        for key, messages in lines.items()
    )
    return InputError(f"{origin} {body}")


def _key_path(loc: Iterable[Any], values: Any) -> list[str]:
    """The config keys of a pydantic error location (its union-member tags dropped)."""
    path: list[str] = []
    node = values
    parts = list(loc)
    for index, part in enumerate(parts):
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            path.append(str(part))
            node = node[part]
        elif isinstance(part, str) and isinstance(node, Mapping) and part in node:
            path.append(part)
            node = node[part]
        elif (
            isinstance(part, str)
            and isinstance(node, Mapping | None)
            and index == len(parts) - 1
            and "[" not in part
        ):
            path.append(part)  # a key that is missing or unknown
        # anything else is a union member's tag such as "list[int]" or "constrained-float"
    return path


UNION_ALTERNATIVES = {"list_type", "model_type", "dict_type", "model_attributes_type"}
"""Pydantic's error types that only say a value is not of another member of a union (a list for a mapping)."""


def _explain(item: Mapping[str, Any]) -> str:
    """What is wrong with one value and how to fix it."""
    kind = item["type"]
    if kind == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") in PATTERN_HINTS:
        return PATTERN_HINTS[item["ctx"]["pattern"]]
    if kind == "extra_forbidden":
        return "unknown key; remove or rename it (config.yaml lists every key with its meaning)"
    if kind == "missing":
        return "required; add it (see config.yaml)"
    message = str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    if kind in ("float_type", "int_type") and isinstance(value, str) and _is_number(value):
        return f"{message} (YAML reads {value} as text: write it with a dot, e.g. 1.0e-3)"
    if kind == "bool_type" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f"{message} (snakemake's --config reads {value} as text: write {value.capitalize()} there)"
    return message


def _shown(item: Mapping[str, Any]) -> str:
    """The offending value, when it is short enough to quote."""
    value = item.get("input")
    if item["type"] in ("missing", "extra_forbidden") or not (
        isinstance(value, str | int | float | bool) or value is None
    ):
        return ""
    return f" (got {json.dumps(value)})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
