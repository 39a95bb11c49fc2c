"""What every config section shares: the strict base class and the constrained value types.

A section refuses unknown keys and checks values strictly; its errors name the key (unetflow.config.messages).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unetflow.config.messages import config_error
from unetflow.config.patterns import NAME_PATTERN, PATTERN_HINTS, SCRIPT_SAFE_PATTERN, SLICES_PATTERN
from unetflow.errors import InputError

ScriptSafe = Annotated[str, Field(pattern=SCRIPT_SAFE_PATTERN, max_length=200)]
Slices = Annotated[str, Field(pattern=SLICES_PATTERN)] | list[Annotated[int, Field(ge=0)]]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
Precision = Literal["float32", "bfloat16", "float16"]
VolumeName = Annotated[str, Field(pattern=NAME_PATTERN)]


def script_safe(value: str, *, key: str) -> str:
    """`value` if it may go into a job script or a command line (one word, no shell syntax); else an error."""
    if not re.fullmatch(SCRIPT_SAFE_PATTERN, value) or len(value) > 200:
        raise InputError(f"config {key}: {PATTERN_HINTS[SCRIPT_SAFE_PATTERN]} (got {json.dumps(value)})")
    return value


class Section(BaseModel):
    """A config section: unknown keys refused, values checked strictly (YAML's "1e-3" is text, not 0.001).

    Patterns are matched by the rust-regex engine, whose `$` is the end of the text as in the JSON schema
    (Python's `re` also lets `$` match before a final line break: "gpu\\n" would pass as a queue).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)
    KEY: ClassVar[str] = ""
    """Where the section lives in config.yaml (named by errors)."""

    @classmethod
    def from_dict(cls, values: Section | Mapping[str, Any] | None) -> Self:
        """`values` as this section: a mapping is validated (errors name the key), a section passes."""
        if isinstance(values, cls):
            return values
        if values is not None and not isinstance(values, Mapping):
            raise InputError(f"config {cls.KEY}: must be a mapping of options, got {values!r}")
        try:
            return cls.model_validate(dict(values or {}))
        except ValidationError as error:
            raise config_error(error, values, prefix=cls.KEY) from None

    def dump(self) -> dict[str, Any]:
        """Plain JSON-compatible values (what Snakemake rules pass as params and checkpoints store)."""
        return self.model_dump(mode="json")
