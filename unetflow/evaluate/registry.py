"""Every metric, registered once: its key, label, direction, description, whether it is a headline number,
and the functions that compute it (unetflow.evaluate.measures) on a slice and pooled over a stack.

The registry drives the computation: `unetflow.evaluate.metrics.evaluate` returns exactly these keys in this
order, each the value of its entry's function; the evaluate step copies the headline ones to the top of its
JSON, and the report's tables and the `unetflow evaluate` help take names, directions and descriptions from
here. Adding a metric is its function in unetflow.evaluate.measures plus one entry below.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from unetflow.evaluate import measures
from unetflow.evaluate.pixels import PixelCounts
from unetflow.evaluate.stats import SliceStats

POOLED = "_pooled"
"""Suffix of a metric pooled over the slices of a stack (`unetflow.evaluate.metrics.evaluate_volume`)."""


@dataclass(frozen=True)
class Metric:
    """One metric: its key in the results, its label for people, which direction is better, what it
    measures, and whether it is a headline number of a run.

    The label is plain text with an optional subscript (`V` and `rand` for V_rand), so each reader (HTML
    page, matplotlib, terminal) writes the subscript its own way.
    """

    key: str
    label: str
    higher_is_better: bool
    description: str
    score: Callable[[SliceStats], float]
    """The metric of one slice."""
    stack: Callable[[Sequence[SliceStats]], float] | None = None
    """The metric pooled over the slices of a stack as the challenge pools it (`<key>_pooled`); None: none."""
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


def build_registry(*metrics: Metric) -> dict[str, Metric]:
    """The metrics by key, in the given order; a key registered twice or ending in _pooled is an error."""
    registry: dict[str, Metric] = {}
    for metric in metrics:
        if metric.key in registry:
            raise ValueError(f"metric {metric.key!r} is registered twice; keep one entry")
        if metric.key.endswith(POOLED):
            raise ValueError(f"metric {metric.key!r}: keys ending in {POOLED!r} name pooled variants")
        registry[metric.key] = metric
    return registry


METRICS: dict[str, Metric] = build_registry(
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


def metric_info(key: str) -> Metric | None:
    """The registered metric of a key; `<key>_pooled` as its base metric marked pooled; None if unknown."""
    if key in METRICS:
        return METRICS[key]
    base = METRICS.get(key.removesuffix(POOLED)) if key.endswith(POOLED) else None
    if base is None:
        return None
    return replace(
        base, key=key, description=f"{base.description}, pooled over slices", headline=False, pooled=True
    )


def help_text(*, width: int = 100) -> str:
    """Every metric with its label, direction and description, for a command's help (lines of `width`)."""
    column = max(len(key) for key in METRICS) + 5
    lines = ["metrics (headline ones marked *):"]
    for key, metric in METRICS.items():
        first = f"  {'*' if metric.headline else ' '}{key}".ljust(column)
        text = f"{metric.text}, {metric.better} is better: {metric.description}"
        lines.append(
            textwrap.fill(
                text, width, initial_indent=first, subsequent_indent=" " * column, break_on_hyphens=False
            )
        )
    return "\n".join(lines)
