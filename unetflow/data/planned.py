"""An output whose plan, stored in its attributes, marks it complete: created so that a start killed half-way
never looks planned (the prediction's and the segmentation's arrays).

On a file system the output is written to a temporary folder and renamed once whole (unetflow.atomic). On
an object store there is no rename: what was at the place goes first, the output is written without its
plan, and the plan is added last, one metadata write, so a killed start leaves nothing that a resumed run
or the workflow takes for a started output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unetflow.atomic import atomic_path
from unetflow.data import omezarr
from unetflow.stores import Location


@contextlib.contextmanager
def planned_output(
    place: Location, attrs: dict[str, Any], *, key: str
) -> Iterator[tuple[Path | Location, dict[str, Any]]]:
    """Where to create the output at `place` and the attributes to give it now (`attrs`, without `key`, the
    plan, on an object store); the plan is there once the block has ended without an error."""
    if place.is_local:
        with atomic_path(place.path) as tmp:
            yield tmp, attrs
        return
    place.remove()
    yield place, {name: value for name, value in attrs.items() if name != key}
    omezarr.update_attrs(place, {key: attrs[key]})
