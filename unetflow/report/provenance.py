"""Where the report's numbers came from: package versions, git commit, hardware, config and rule times."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unetflow.config.model import Config
from unetflow.report.formatting import number

PACKAGES = ("unetflow", "torch", "numpy", "scipy", "zarr", "dask", "ome-zarr", "matplotlib", "snakemake")
"""The packages whose versions the results depend on."""


@dataclass(frozen=True)
class Provenance:
    """The provenance section's content: when, from which commit and folder, on what, with what."""

    generated: str
    commit: str
    project: Path
    versions: dict[str, str]
    hardware: dict[str, str]
    benchmarks: Path
    rules: list[dict[str, Any]]
    config: str

    @property
    def total_seconds(self) -> float:
        """Wall time of all rules together."""
        return sum(rule["seconds"] for rule in self.rules)

    @property
    def total_jobs(self) -> int:
        """Jobs of all rules together."""
        return sum(rule["jobs"] for rule in self.rules)


def collect_provenance(*, project: Path, benchmarks: Path, config: Config) -> Provenance:
    """Everything the provenance section shows, read now: `project` is the checkout of the run's workflow."""
    commit = git_commit(project)
    if commit == "unknown":
        commit = git_commit(Path(__file__).resolve().parent)
    return Provenance(
        generated=dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
        commit=commit,
        project=project.resolve(),
        versions=package_versions(),
        hardware=hardware(),
        benchmarks=benchmarks,
        rules=benchmark_times(benchmarks),
        config=config_yaml(config.dump()),
    )


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages the results depend on ("not installed" where absent)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(folder: str | os.PathLike[str]) -> str:
    """`git rev-parse HEAD` of the checkout holding `folder` (marked when locally changed), else "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = " (with uncommitted changes)" if status.returncode == 0 and status.stdout.strip() else ""
    return head.stdout.strip() + dirty


def hardware() -> dict[str, str]:
    """CPU model, cores, memory and GPUs of this machine."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "CPU": cpu or platform.processor() or platform.machine() or "unknown",
        "CPU cores": str(os.cpu_count() or "unknown"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["CPU cores usable"] = str(len(os.sched_getaffinity(0)))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["Memory"] = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    info["GPU"] = _gpus()
    info["System"] = platform.platform()
    return info


def _gpus() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (torch not installed)"
    try:
        if not torch.cuda.is_available():
            return "none (CUDA not available)"
        return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception as exc:  # a broken driver must not stop the report
        return f"unknown ({exc})"


def benchmark_times(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per rule: jobs, total and longest wall time (s) and peak max_rss (MB) from Snakemake benchmark TSVs.

    ``benchmarks/<rule>/<job>.tsv`` and ``benchmarks/<rule>.tsv`` are both read; repeated measurements
    within one file are averaged. Rules with the most time come first.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    rules: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*.tsv")):
        relative = path.relative_to(root)
        rule = relative.parts[0] if len(relative.parts) > 1 else path.stem
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        seconds = [number(r.get("s")) for r in rows]
        seconds = [s for s in seconds if math.isfinite(s)]
        rss = [number(r.get("max_rss")) for r in rows]
        rss = [r for r in rss if math.isfinite(r)]
        if not seconds:
            continue
        entry = rules.setdefault(
            rule, {"rule": rule, "jobs": 0, "seconds": 0.0, "longest": 0.0, "max_rss": math.nan}
        )
        mean = float(np.mean(seconds))
        entry["jobs"] += 1
        entry["seconds"] += mean
        entry["longest"] = max(entry["longest"], mean)
        if rss:
            entry["max_rss"] = max(np.nan_to_num(entry["max_rss"], nan=-1.0), max(rss))
    return sorted(rules.values(), key=lambda e: -e["seconds"])


class _ConfigDumper(yaml.SafeDumper):
    """Block-style YAML with lists of plain values on one line ([16, 256, 256]), as in config.yaml."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_ConfigDumper.add_representer(list, _represent_list)


def config_yaml(config: Mapping[str, Any]) -> str:
    """The workflow config as YAML (values YAML cannot hold are written as strings)."""
    plain = json.loads(json.dumps(config, default=str))
    return yaml.dump(plain, Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False, width=100)
