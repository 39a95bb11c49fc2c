"""The config's JSON schema, generated from the model: what workflow/schemas/config.schema.yaml holds."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema

from unetflow.config.model import Config

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON schema without the generated titles (the descriptions say it all)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: Any) -> Any:
        generated = super().model_schema(schema)
        generated.pop("title", None)
        return generated


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config (what workflow/schemas/config.schema.yaml holds)."""
    schema = Config.model_json_schema(schema_generator=_Schema)
    return {"$schema": SCHEMA_URI, **schema}


def schema_yaml() -> str:
    """The schema file's text: a header, then the schema as YAML (keys in the model's order)."""
    header = "# Generated from unetflow/config/model.py by `unetflow schema`; a test keeps the two equal.\n"
    return header + yaml.safe_dump(json_schema(), sort_keys=False, width=110)


def reference_markdown(*, level: int = 2) -> str:
    """Every config key as Markdown tables, one per section (type, default, description) under a heading of
    `level`, from the schema: the documentation's configuration reference, which so cannot drift."""
    schema = json_schema()
    definitions = {"#": schema, **schema["$defs"]}
    keys = _section_keys(definitions)
    out: list[str] = []
    for name, key in keys.items():
        node = definitions[name]
        heading = "#" * level + " " + (f"`{key}`" if key else "Top level")
        out += [heading, "", _one_line(node.get("description", "")), ""]
        out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for field, spec in node["properties"].items():
            nested = _section_ref(spec)
            described = spec.get("description") or definitions.get(nested or "", {}).get("description", "")
            cells = [f"`{field}`", _type_text(spec, keys), _default_text(spec, nested), _one_line(described)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _section_keys(definitions: dict[str, Any]) -> dict[str, str]:
    """Each section definition's config key (where it first appears, depth first), in reading order."""
    keys: dict[str, str] = {}

    def visit(name: str, key: str) -> None:
        keys[name] = key
        for field, spec in definitions[name]["properties"].items():
            nested = _section_ref(spec)
            if nested is not None and nested not in keys:
                dotted = f"{key}.{field}" if key else field
                visit(nested, f"{dotted}.<name>" if _is_mapping_of_sections(spec) else dotted)

    visit("#", "")
    return keys


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _refs(spec: dict[str, Any]) -> list[str]:
    """The section definitions a field refers to (directly, in a union, as items or as mapping values)."""
    found = []
    for part in [spec, *spec.get("anyOf", [])]:
        values = [*(part.get("patternProperties") or {}).values(), part.get("additionalProperties") or {}]
        for candidate in (part, part.get("items", {}), *values):
            if isinstance(candidate, dict) and "$ref" in candidate:
                found.append(candidate["$ref"].rsplit("/", 1)[-1])
    return found


def _section_ref(spec: dict[str, Any]) -> str | None:
    refs = _refs(spec)
    return refs[0] if refs else None


def _is_mapping_of_sections(spec: dict[str, Any]) -> bool:
    return any("patternProperties" in part for part in [spec, *spec.get("anyOf", [])])


def _type_text(spec: dict[str, Any], keys: dict[str, str]) -> str:
    """A field's type in words: its alternatives joined by `or`, with bounds and choices; a section is named
    by the key it is described under."""
    if "anyOf" in spec:
        return " or ".join(_type_text(part, keys) for part in spec["anyOf"])
    if "$ref" in spec:
        return f"section `{keys[spec['$ref'].rsplit('/', 1)[-1]]}`"
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return " or ".join(f"`{json.dumps(value)}`" for value in spec["enum"])
    kind = spec.get("type", "any")
    if kind == "array":
        items = _type_text(spec.get("items", {}), keys)
        size = spec.get("minItems")
        count = f"{size} " if size is not None and size == spec.get("maxItems") else ""
        return f"list of {count}{items}"
    if kind == "object":
        values = [*(spec.get("patternProperties") or {}).values(), spec.get("additionalProperties")]
        found = [value for value in values if isinstance(value, dict)]
        return f"mapping of name to {_type_text(found[0], keys)}" if found else "mapping"
    bounds = [
        f"{sign} {spec[key]}"
        for key, sign in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in spec
    ]
    if "pattern" in spec:
        bounds.append("pattern")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _default_text(spec: dict[str, Any], nested: str | None) -> str:
    if "default" not in spec:
        return "required"
    value = spec["default"]
    if nested is not None and isinstance(value, dict | list):
        return "see below"
    return f"`{json.dumps(value)}`"
