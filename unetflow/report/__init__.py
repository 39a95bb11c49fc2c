"""The workflow's report: one self-contained HTML page with the metrics next to the paper's, figures,
training curves, the border-weight ablation and provenance.

Every input is checked before anything is drawn (`inputs`), so a missing file is reported by name instead of
as a half-written page. Figures are drawn with matplotlib's Agg canvas and embedded as base64 PNG
(`figures`); each section's content is plain data (`sections`, `provenance`) that a Jinja2 template lays
out with autoescaping (`render`, `templates/`), and the stylesheet (`static/report.css`) is inlined: the page
opens offline, can be mailed and archived as one file.
"""

from unetflow.report.build import build_prediction_report, build_report
from unetflow.report.figures import smooth
from unetflow.report.formatting import format_seconds, format_value, slice_ranges
from unetflow.report.inputs import read_csv_rows
from unetflow.report.provenance import benchmark_times, config_yaml, git_commit, hardware, package_versions
from unetflow.report.sections import PAPER_TABLE1, paper_values

__all__ = [
    "PAPER_TABLE1",
    "benchmark_times",
    "build_prediction_report",
    "build_report",
    "config_yaml",
    "format_seconds",
    "format_value",
    "git_commit",
    "hardware",
    "package_versions",
    "paper_values",
    "read_csv_rows",
    "slice_ranges",
    "smooth",
]
