"""The report's colours, stated once: the page's stylesheet takes them as CSS variables and the figures
draw with the same values, so a model, a class or an error has one colour on the whole page."""

from __future__ import annotations

PAGE = {
    "ink": "#1d2329",
    "muted": "#5b6670",
    "rule": "#d8dde2",
    "accent": "#1f5fa8",
    "paper": "#f6f1e4",
    "panel": "#f4f6f8",
    "stripe": "#fafbfc",
    "code": "#f6f8fa",
    "frame": "#eceff1",
    "good": "#2a9d4b",
    "good-panel": "#f2f8f3",
    "bad": "#a33",
}
"""The page's colours by CSS variable name (`var(--ink)` in static/report.css)."""
GRID = "#e3e3e3"
"""The grid lines of plots."""
NOTE = "#777"
"""Text drawn into an empty plot ("nothing logged")."""
MODEL_COLOURS = ("#1f5fa8", "#d9660b", "#2a9d4b", "#b3303b", "#7b52ab", "#8c6d31")
"""Lines and bars of the 1st, 2nd, ... model (the first is the page's accent)."""
FALSE_POSITIVE = (0.87, 0.0, 0.40)
"""Pixels predicted as cell where the truth has membrane (magenta), as 0..1 RGB."""
FALSE_NEGATIVE = (0.0, 0.40, 0.90)
"""Pixels predicted as membrane where the truth has cell (blue), as 0..1 RGB."""


OBJECT_ERRORS = {
    "missed": (0.1, 0.45, 1.0),
    "split": (1.0, 0.55, 0.0),
    "merged": (1.0, 0.0, 1.0),
    "extra": (1.0, 1.0, 0.0),
}
"""Outlines of the cells the cell figure marks, as 0..1 RGB: gold cells missed (blue) or split (orange),
predicted cells that merge gold cells (magenta) or are extra (yellow)."""


def css_variables() -> str:
    """The `:root` rule that defines the page's colours for the stylesheet."""
    return ":root { " + " ".join(f"--{name}: {value};" for name, value in PAGE.items()) + " }\n"
