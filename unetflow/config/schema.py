"""The config's JSON schema, generated from the model: what workflow/schemas/config.schema.yaml holds."""

from __future__ import annotations

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
