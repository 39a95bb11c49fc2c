"""The report's section on objects: the segment step's scores beside the connected-components baseline, and
a test slice with every object in its own colour beside the truth, the largest splits and merges named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.segmentation import find_boundaries

from unetflow.data import omezarr
from unetflow.evaluate.baseline import connected_components
from unetflow.evaluate.registry import Metric, metric_info
from unetflow.report.figures import Image, contrast, embed, hide_axes, new_figure, window
from unetflow.report.inputs import Inputs, Run, read_truth
from unetflow.report.sections import Section, section

KEYS = ("voi_split", "voi_merge", "adapted_rand_error", "rand_error", "v_rand", "v_info")
"""The scores shown, 3-D ones first (present where the truth holds instance ids)."""


@dataclass(frozen=True)
class ObjectsContent:
    """The table (label, metric, segmentation, connected components) and the figure with its notes."""

    rows: list[tuple[str, Metric | None, float, float]]
    image: Image | None
    slice: int | None
    splits: list[dict[str, Any]]
    merges: list[dict[str, Any]]
    summary: dict[str, Any]


def _colours(labels: np.ndarray) -> np.ndarray:
    """Labels as RGB, one colour per id (the same id the same colour in every panel), 0 black."""
    ids, inverse = np.unique(labels, return_inverse=True)
    hues = (ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    rng = np.stack([(hues >> np.uint64(s)) % np.uint64(256) for s in (0, 8, 16)], axis=1) / 255.0
    palette = 0.25 + 0.75 * rng
    palette[ids == 0] = 0.0
    return palette[inverse.reshape(labels.shape)]


def objects_figure(inputs: Inputs, segmentation: Path, z: int, threshold: float, merge: int | None) -> Any:
    """Raw | truth | segmentation | connected components of the thresholded mask, one test slice."""
    ys, xs = window(inputs.shape)
    raw = np.asarray(omezarr.open_image(inputs.data)[z, ys, xs])
    truth, _ = read_truth(inputs.data, (z, ys, xs))
    objects = np.asarray(omezarr.open_image(segmentation)[z, ys, xs])
    probability = np.asarray(omezarr.open_image(inputs.predictions[inputs.main])[z : z + 1, ys, xs])
    baseline = connected_components(probability, threshold, three_d=False)[0]
    fig = new_figure(11.0, 3.3)
    axes = fig.subplots(1, 4)
    panels = [
        (contrast(raw), "Raw", "gray"),
        (_colours(truth), f"Truth ({len(np.unique(truth[truth > 0]))} objects)", None),
        (_colours(objects), f"Segmentation ({len(np.unique(objects[objects > 0]))})", None),
        (_colours(baseline), f"Connected components ({len(np.unique(baseline[baseline > 0]))})", None),
    ]
    if merge is not None and (objects == merge).any():
        panels[2][0][find_boundaries(objects == merge, mode="inner")] = 1.0
    for ax, (image, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap=cmap, interpolation="nearest")
        hide_axes(ax)
        ax.set_title(title, fontsize=10)
    return fig


def objects_section(run: Run, inputs: Inputs, segmentation: str | None, threshold: float) -> Section | None:
    """The section, where the metrics hold the segment step's scores (else none)."""
    found = run.summary.get("segment")
    if not found:
        return None
    ours, theirs = found.get("segmentation", {}), found.get("connected_components", {})
    rows = [(key, metric_info(key), ours[key], theirs.get(key, float("nan"))) for key in KEYS if key in ours]
    worst = next(iter(found.get("volumes", {}).get(inputs.volume, {}).get("worst", {}).values()), {})
    splits, merges = worst.get("splits", []), worst.get("merges", [])
    image, shown = None, None
    if segmentation is not None and Path(segmentation).exists() and inputs.test:
        shown = inputs.test[0]
        merge = merges[0]["id"] if merges else None
        fig = objects_figure(inputs, Path(segmentation), shown, threshold, merge)
        image = embed(
            fig, fig_id="fig-objects", alt=f"Objects of test slice {shown}: truth, segmentation, components"
        )
    summary_path = Path(str(segmentation).removesuffix(".zarr") + ".json") if segmentation else None
    summary = {}
    if summary_path is not None and summary_path.exists():
        import json

        summary = json.loads(summary_path.read_text())
    content = ObjectsContent(
        rows=rows, image=image, slice=shown, splits=splits, merges=merges, summary=summary
    )
    return section("objects", "Objects: the instance segmentation", content)
