"""Every metric, registered once: its key, label, direction, description, whether it is a headline number,
and the functions that compute it on one unit and pooled over several.

Two families, each computed from its own statistics of a unit:

* `METRICS`, the pixel family, per 2-D slice: functions of a slice's `SliceStats` (classes at the
  threshold, the sweep, the partitions; unetflow.evaluate.measures), pooled over a stack as the ISBI
  challenge pools them. `unetflow.evaluate.metrics.evaluate` returns exactly these keys in this order.
* `OBJECT_METRICS`, the object family: functions of one `Contingency` of truth and predicted ids (2-D frames
  or 3-D volumes; unetflow.evaluate.objects), pooled over frames by joining their tables.
  `unetflow.evaluate.metrics.evaluate_objects` returns exactly these keys in this order.

The registries drive the computation: each key's value is its entry's function; the evaluate steps copy the
headline ones to the top of their JSON, and the report's tables and the `unetflow evaluate` help take names,
directions and descriptions from here. Adding a metric is its function (unetflow.evaluate.measures, or the
module of its family) plus one entry below.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from unetflow.evaluate import measures, objects
from unetflow.evaluate.objects import Contingency
from unetflow.evaluate.pixels import PixelCounts
from unetflow.evaluate.stats import SliceStats

Stats = TypeVar("Stats")

POOLED = "_pooled"
"""Suffix of a metric pooled over the slices of a stack (`unetflow.evaluate.metrics.evaluate_volume`)."""


@dataclass(frozen=True)
class Metric(Generic[Stats]):
    """One metric: its key in the results, its label for people, which direction is better, what it
    measures, and whether it is a headline number of a run.

    The label is plain text with an optional subscript (`V` and `rand` for V_rand), so each reader (HTML
    page, matplotlib, terminal) writes the subscript its own way. `Stats` is what its family computes a
    metric from: a slice's `SliceStats` (pixels) or a `Contingency` of ids (objects).
    """

    key: str
    label: str
    higher_is_better: bool
    description: str
    score: Callable[[Stats], float]
    """The metric of one unit (a slice, a frame, a volume)."""
    stack: Callable[[Sequence[Stats]], float] | None = None
    """The metric pooled over several units as the challenge pools it (`<key>_pooled`); None: none."""
    headline: bool = False
    subscript: str = ""
    pooled: bool = False
    """Whether this is the pooled variant of a metric (`metric_info` of a `<key>_pooled`)."""

    @property
    def arrow(self) -> str:
        """The direction of improvement as an arrow: up where higher is better, down where lower is."""
        return "\u2191" if self.higher_is_better else "\u2193"

    @property
    def better(self) -> str:
        """'higher' or 'lower': which values are better."""
        return "higher" if self.higher_is_better else "lower"

    @property
    def text(self) -> str:
        """The label as plain text, e.g. 'V_rand (pooled)'."""
        return self._written(f"_{self.subscript}")

    @property
    def mathtext(self) -> str:
        """The label for matplotlib, the subscript in mathtext, e.g. 'V$_{rand}$'."""
        return self._written(f"$_{{{self.subscript}}}$")

    def _written(self, subscript: str) -> str:
        return self.label + (subscript if self.subscript else "") + (" (pooled)" if self.pooled else "")


def build_registry(*metrics: Metric[Any], taken: Sequence[str] = ()) -> dict[str, Metric[Any]]:
    """The metrics by key, in the given order; a key registered twice (here or among `taken`, another
    family's keys) or ending in _pooled is an error."""
    registry: dict[str, Metric[Any]] = {}
    for metric in metrics:
        if metric.key in registry or metric.key in taken:
            raise ValueError(f"metric {metric.key!r} is registered twice; keep one entry")
        if metric.key.endswith(POOLED):
            raise ValueError(f"metric {metric.key!r}: keys ending in {POOLED!r} name pooled variants")
        registry[metric.key] = metric
    return registry


METRICS: dict[str, Metric[SliceStats]] = build_registry(
    Metric(
        "iou",
        "IoU (cells)",
        higher_is_better=True,
        description="intersection over union of the cell-interior (foreground) class",
        headline=True,
        score=measures.iou,
        stack=measures.pooled(PixelCounts.iou),
    ),
    Metric(
        "iou_background",
        "IoU (membrane)",
        higher_is_better=True,
        description="intersection over union of the membrane class",
        score=measures.iou_background,
        stack=measures.pooled(PixelCounts.iou_background),
    ),
    Metric(
        "mean_iou",
        "Mean IoU",
        higher_is_better=True,
        description="mean of the cell and membrane IoU",
        score=measures.mean_iou,
        stack=measures.pooled(PixelCounts.mean_iou),
    ),
    Metric(
        "dice",
        "Dice",
        higher_is_better=True,
        description="Dice coefficient (F1) of the cell-interior class",
        headline=True,
        score=measures.dice,
        stack=measures.pooled(PixelCounts.fscore),
    ),
    Metric(
        "pixel_error",
        "Pixel error",
        higher_is_better=False,
        description="fraction of wrongly classified pixels at the threshold",
        headline=True,
        score=measures.pixel_error,
        stack=measures.pooled(PixelCounts.pixel_error),
    ),
    Metric(
        "isbi_pixel_error",
        "Pixel error (ISBI)",
        higher_is_better=False,
        description="the challenge's pixel error, 1 - maximal F-score of pixel classification",
        score=measures.isbi_pixel_error,
        stack=measures.isbi_pixel_error_pooled,
    ),
    Metric(
        "rand_error",
        "Rand error",
        higher_is_better=False,
        description="the ISBI 2012 Rand error, 1 - maximal foreground-restricted Rand F-score",
        score=measures.rand_error,
        stack=measures.rand_error_pooled,
    ),
    Metric(
        "v_rand",
        "V",
        subscript="rand",
        higher_is_better=True,
        description="Rand F-score after border thinning (current leaderboard)",
        score=measures.v_rand,
        stack=measures.v_rand_pooled,
    ),
    Metric(
        "v_info",
        "V",
        subscript="info",
        higher_is_better=True,
        description="information-theoretic F-score after border thinning",
        score=measures.v_info,
        stack=measures.v_info_pooled,
    ),
    Metric(
        "warping_error",
        "Warping error",
        higher_is_better=False,
        description="topological errors (splits, mergers) per pixel, Jain et al. 2010",
        score=measures.warping_error,
        stack=measures.warping_error_pooled,
    ),
)
"""The metrics `unetflow.evaluate.metrics.evaluate` computes, in the order it returns them."""

HEADLINE_KEYS: tuple[str, ...] = tuple(key for key, metric in METRICS.items() if metric.headline)
"""The headline numbers of a run, copied to the top of the evaluate step's metrics JSON."""

OBJECT_METRICS: dict[str, Metric[Contingency]] = build_registry(
    Metric(
        "seg",
        "SEG",
        higher_is_better=True,
        description="the Cell Tracking Challenge's SEG: mean Jaccard index of every truth object and the "
        "predicted object covering more than half of it (0 without one); false positives cost nothing",
        headline=True,
        score=objects.seg,
        stack=objects.pooled(objects.seg),
    ),
    Metric(
        "detection_f1",
        "Detection F1",
        higher_is_better=True,
        description="F1 of truth and predicted objects matched one to one at IoU > 0.5 (splits and merges "
        "cost false positives and negatives)",
        headline=True,
        score=objects.detection_f1,
        stack=objects.pooled(objects.detection_f1),
    ),
    Metric(
        "precision",
        "Precision (objects)",
        higher_is_better=True,
        description="matched predicted objects over predicted objects (IoU > 0.5)",
        score=objects.precision,
        stack=objects.pooled(objects.precision),
    ),
    Metric(
        "recall",
        "Recall (objects)",
        higher_is_better=True,
        description="matched truth objects over truth objects (IoU > 0.5)",
        score=objects.recall,
        stack=objects.pooled(objects.recall),
    ),
    Metric(
        "matched_iou",
        "IoU (matched cells)",
        higher_is_better=True,
        description="mean intersection over union of the matched cells",
        headline=True,
        score=objects.matched_iou,
        stack=objects.pooled(objects.matched_iou),
    ),
    Metric(
        "matched_dice",
        "Dice (matched cells)",
        higher_is_better=True,
        description="mean Dice coefficient of the matched cells",
        score=objects.matched_dice,
        stack=objects.pooled(objects.matched_dice),
    ),
    Metric(
        "voi_split",
        "VOI split",
        higher_is_better=False,
        description="variation of information, split part: H(prediction | truth) in bits over the truth's "
        "objects, as CREMI scores neurons (0 is perfect)",
        score=objects.voi_split,
        stack=objects.pooled(objects.voi_split),
    ),
    Metric(
        "voi_merge",
        "VOI merge",
        higher_is_better=False,
        description="variation of information, merge part: H(truth | prediction) in bits",
        score=objects.voi_merge,
        stack=objects.pooled(objects.voi_merge),
    ),
    Metric(
        "adapted_rand_error",
        "Adapted Rand error",
        higher_is_better=False,
        description="1 - the Rand F-score over pairs within truth objects, as SNEMI3D and CREMI score it",
        score=objects.adapted_rand_error,
        stack=objects.pooled(objects.adapted_rand_error),
    ),
    taken=tuple(METRICS),
)
"""The object metrics `unetflow.evaluate.metrics.evaluate_objects` computes, in the order it returns them."""


FAMILIES: dict[str, dict[str, Metric[Any]]] = {"pixels": METRICS, "objects": OBJECT_METRICS}
"""Every family of metrics by name."""


def metric_info(key: str) -> Metric[Any] | None:
    """The registered metric of a key (any family); `<key>_pooled` as its base metric marked pooled; None
    if unknown."""
    for family in FAMILIES.values():
        if key in family:
            return family[key]
    base_key = key.removesuffix(POOLED)
    base = METRICS.get(base_key) or OBJECT_METRICS.get(base_key) if key.endswith(POOLED) else None
    if base is None:
        return None
    over = "the objects of every frame" if base_key in OBJECT_METRICS else "slices"
    return replace(
        base, key=key, description=f"{base.description}, pooled over {over}", headline=False, pooled=True
    )


def help_text(*, width: int = 100, family: str = "pixels") -> str:
    """Every metric of a family with its label, direction and description, for a command's help (lines of
    `width`)."""
    metrics = FAMILIES[family]
    column = max(len(key) for key in metrics) + 5
    lines = [f"{'pixel' if family == 'pixels' else 'object'} metrics (headline ones marked *):"]
    for key, metric in metrics.items():
        first = f"  {'*' if metric.headline else ' '}{key}".ljust(column)
        text = f"{metric.text}, {metric.better} is better: {metric.description}"
        lines.append(
            textwrap.fill(
                text, width, initial_indent=first, subsequent_indent=" " * column, break_on_hyphens=False
            )
        )
    return "\n".join(lines)
