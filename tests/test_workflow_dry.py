"""The workflow before any job runs: dry runs of every profile, the jobs' threads and resources, and config
errors that stop a run before anything is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import job_of, snakemake, write_config


@pytest.fixture(scope="module")
def config_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a user who ran `unetflow install-profile slurm` (a fresh XDG_CONFIG_HOME)."""
    home = tmp_path_factory.mktemp("config")
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    install = [sys.executable, "-m", "unetflow.cli", "install-profile", "slurm"]
    subprocess.run(install, env=env, capture_output=True, check=True)
    return env


@pytest.mark.parametrize("profile", ["profiles/local", "profiles/slurm", "slurm"])
def test_dry_run_of_each_profile_lists_the_chain(profile: str, config_home: dict[str, str]) -> None:
    # `slurm`: the profile by name, as installed into the user's Snakemake profile folder.
    result = snakemake("-n", "--forceall", "--nolock", "--profile", profile, env=config_home)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    assert f"Using profiles {profile} and workflow specific profile profiles/default for" in out
    for rule in ("synthesize", "import_volume", "weights", "train", "predict", "evaluate", "report"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out
    if profile != "profiles/local":
        # The workflow profile's needs and the user profile's account, merged: neither replaced the other.
        for rule, memory in (("train", 32000), ("predict", 16000)):
            resources = job_of(out, rule)
            assert f"mem_mb={memory}," in resources and "gpu=1" in resources
            assert "slurm_account=," in resources


def test_workflow_profile_leaves_a_two_core_local_run_as_it_was() -> None:
    """`make run`: the same jobs with the same threads as without profiles/default (threads are capped
    at --cores; the gpu and mem_mb resources limit nothing without --resources)."""
    runs = [
        snakemake("-n", "--forceall", "--nolock", "--profile", "profiles/local", "--cores", "2", *extra)
        for extra in ((), ("--workflow-profile", "none"))
    ]
    jobs = []
    for result in runs:
        assert result.returncode == 0, result.stderr + result.stdout
        jobs.append(
            [line for line in result.stdout.splitlines() if line.startswith(("rule ", "    threads:"))]
        )
    assert jobs[0] == jobs[1]
    assert "rule train:" in jobs[0] and jobs[0][jobs[0].index("rule train:") + 1] == "    threads: 2"
    assert "gpu=1" in job_of(runs[0].stdout, "train") and "gpu=1" not in job_of(runs[1].stdout, "train")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"train.learning_rate": 0.1}, "learning_rate"),
        ({"predict.memory_gb": -1}, "memory_gb"),
        ({"train.optimizer": "rmsprop"}, "optimizer"),
        ({"split.volume": "nowhere"}, "split.volume"),
        ({"split.test": "12-99"}, "split.test"),
        ({"model.depth": "four"}, "depth"),
        ({"predict.cluster.nodes": 4}, "nodes"),
        ({"predict.threshold": "high"}, "threshold"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path: Path, change: dict, named: str) -> None:
    config = write_config(tmp_path, change)
    result = snakemake("-n", "--configfile", str(config), "--directory", str(tmp_path))
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_distributed_prediction_with_a_local_cluster_gives_the_job_its_workers_cores(tmp_path: Path) -> None:
    """The LocalCluster's workers run inside the predict job: it asks for workers x threads cores."""
    local = write_config(tmp_path, {"predict.scheduler": "distributed", "predict.cluster": {"workers": 3}})
    result = snakemake("-n", "--forceall", "--nolock", "--cores", "8", "--configfile", str(local))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    predict_job = out[out.index("rule predict:") :].split("\n\n")[0]
    assert "threads: 3" in predict_job  # the LocalCluster's 3 one-thread workers run inside the job


def test_ablation_trains_and_reports_a_second_model(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"ablation": True})
    result = snakemake("-n", "--forceall", "--nolock", "--configfile", str(config))
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout + result.stderr
    for model in ("main", "ablation"):
        assert f"results/models/{model}/model.pt" in out
        assert f"results/metrics/{model}.json" in out
    report_job = out[out.index("rule report:") :].split("\n\n")[0]
    assert "results/metrics/ablation.json" in report_job


@pytest.mark.parametrize(
    ("change", "steps"),
    [
        ({}, ["all-0"]),
        (
            {"segment.block_groups": 2, "segment.block_shape": [8, 256, 256]},
            ["fragments-0", "fragments-1", "graph-0", "graph-1", "solve-0", "relabel-0", "relabel-1"],
        ),
    ],
)
def test_a_segmentation_of_one_block_group_is_one_job(tmp_path: Path, change: dict, steps: list[str]) -> None:
    """segment_step jobs of the default volume (16 x 256 x 256, one block): one job of step `all`; split
    into two block groups: fragments, graph and relabel per group, one solve."""
    config = write_config(tmp_path, change)
    result = snakemake("-n", "--forceall", "--nolock", "--configfile", str(config))
    assert result.returncode == 0, result.stderr + result.stdout
    flags = re.findall(r"segment/main/synthetic\.steps/(\w+-\d)\.done", result.stdout)
    assert sorted(set(flags)) == sorted(steps)
