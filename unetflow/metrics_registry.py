"""Every metric of `unetflow.metrics.evaluate`, registered once: key, label, direction, description and
whether it is a headline number.

`unetflow.metrics` returns exactly these keys in this order, the evaluate step copies the headline ones to
the top of its JSON, and the report's tables and the `unetflow evaluate` help take names, directions and
descriptions from here. Adding a metric is its function in `unetflow.metrics` plus one entry below.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace

POOLED = "_pooled"
"""Suffix of a metric pooled over the slices of a stack (`unetflow.metrics.evaluate_volume`)."""


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
    headline: bool = False
    subscript: str = ""
    pooled: bool = False

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


def _registry(*metrics: Metric) -> dict[str, Metric]:
    """The metrics by key, in the given order; a key registered twice or ending in _pooled is an error."""
    registry: dict[str, Metric] = {}
    for metric in metrics:
        if metric.key in registry:
            raise ValueError(f"metric {metric.key!r} is registered twice; keep one entry")
        if metric.key.endswith(POOLED):
            raise ValueError(f"metric {metric.key!r}: keys ending in {POOLED!r} name pooled variants")
        registry[metric.key] = metric
    return registry


METRICS: dict[str, Metric] = _registry(
    Metric(
        "iou",
        "IoU (cells)",
        higher_is_better=True,
        description="intersection over union of the cell-interior (foreground) class",
        headline=True,
    ),
    Metric(
        "iou_background",
        "IoU (membrane)",
        higher_is_better=True,
        description="intersection over union of the membrane class",
    ),
    Metric("mean_iou", "Mean IoU", higher_is_better=True, description="mean of the cell and membrane IoU"),
    Metric(
        "dice",
        "Dice",
        higher_is_better=True,
        description="Dice coefficient (F1) of the cell-interior class",
        headline=True,
    ),
    Metric(
        "pixel_error",
        "Pixel error",
        higher_is_better=False,
        description="fraction of wrongly classified pixels at the threshold",
        headline=True,
    ),
    Metric(
        "isbi_pixel_error",
        "Pixel error (ISBI)",
        higher_is_better=False,
        description="the challenge's pixel error, 1 - maximal F-score of pixel classification",
    ),
    Metric(
        "rand_error",
        "Rand error",
        higher_is_better=False,
        description="the ISBI 2012 Rand error, 1 - maximal foreground-restricted Rand F-score",
    ),
    Metric(
        "v_rand",
        "V",
        subscript="rand",
        higher_is_better=True,
        description="Rand F-score after border thinning (current leaderboard)",
    ),
    Metric(
        "v_info",
        "V",
        subscript="info",
        higher_is_better=True,
        description="information-theoretic F-score after border thinning",
    ),
    Metric(
        "warping_error",
        "Warping error",
        higher_is_better=False,
        description="topological errors (splits, mergers) per pixel, Jain et al. 2010",
    ),
)
"""The metrics of one slice, in the order `unetflow.metrics.evaluate` returns them."""

METRIC_KEYS: tuple[str, ...] = tuple(METRICS)
"""Keys of one slice's result, in order."""

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
