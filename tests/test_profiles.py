"""The Snakemake profiles: the slurm template installed where `snakemake --profile slurm` finds it, and the
split between it (the cluster's settings) and the workflow profile profiles/default (the jobs' needs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from unetflow.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "unetflow" / "profile_templates" / "slurm"


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh XDG_CONFIG_HOME (Snakemake looks for user profiles in its snakemake/), a cwd of no profiles."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


def test_install_writes_the_template_into_the_snakemake_folder_of_the_config_home(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # That `snakemake --profile slurm` then finds it: the dry runs of tests/test_workflow.py.
    assert main(["install-profile", "slurm"]) == 0
    installed = config_home / "snakemake" / "slurm"
    assert _files(installed) == _files(TEMPLATE)
    assert sorted(_files(installed)) == ["config.yaml", "partitions.yaml"]
    assert f"at {installed}" in capsys.readouterr().out


def test_install_refuses_to_overwrite_a_profile_and_says_how_to_compare_and_replace_it(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["install-profile"]) == 0
    installed = config_home / "snakemake" / "slurm"
    edited = (installed / "config.yaml").read_text().replace('slurm_account: ""', "slurm_account: lab42")
    (installed / "config.yaml").write_text(edited)
    capsys.readouterr()

    assert main(["install-profile", "slurm"]) == 2
    error = capsys.readouterr().err
    assert f"already exists at {installed}" in error
    assert f"diff -r {TEMPLATE} {installed}" in error
    assert "unetflow install-profile slurm --force" in error
    assert (installed / "config.yaml").read_text() == edited  # left as it was
    assert sorted(p.name for p in installed.parent.iterdir()) == ["slurm"]


def test_force_replaces_the_profile_and_keeps_the_old_one_beside_it(
    config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = config_home / "snakemake"
    (profiles / "slurm").mkdir(parents=True)
    (profiles / "slurm" / "config.yaml").write_text("executor: slurm\n")
    assert main(["install-profile", "slurm", "--force"]) == 0
    assert _files(profiles / "slurm") == _files(TEMPLATE)
    (old,) = (path for path in profiles.iterdir() if path.name != "slurm")
    assert old.name.startswith("slurm.old-")
    assert _files(old) == {"config.yaml": b"executor: slurm\n"}
    assert f"moved the profile that was there to {old}" in capsys.readouterr().out
    # A second forced install in the same second keeps both earlier profiles.
    assert main(["install-profile", "slurm", "--force"]) == 0
    assert len(list(profiles.iterdir())) == 3


def test_install_into_another_folder_and_unknown_templates(
    tmp_path: Path, config_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    assert main(["install-profile", "slurm", "--profiles-dir", str(site)]) == 0
    assert _files(site / "slurm") == _files(TEMPLATE)
    assert not config_home.exists()
    assert main(["install-profile", "slurm", "--profiles-dir", str(site)]) == 2
    assert f"--force --profiles-dir {site}" in capsys.readouterr().err
    assert main(["install-profile", "pbs"]) == 2
    assert "no Snakemake profile template named 'pbs'" in capsys.readouterr().err


def test_the_repository_profile_is_the_template() -> None:
    # `snakemake --profile profiles/slurm` and the installed `--profile slurm` must be the same profile.
    assert _files(ROOT / "profiles" / "slurm") == _files(TEMPLATE), (
        "profiles/slurm differs from unetflow/profile_templates/slurm (the template that is installed): "
        "edit the template and copy it: cp unetflow/profile_templates/slurm/* profiles/slurm/"
    )


def test_cluster_settings_and_workflow_needs_do_not_share_a_top_level_key() -> None:
    # The workflow profile is loaded after every --profile and each of its top-level keys replaces the same
    # key there: a set-resources in the user profile would be dropped, a default-resources in the workflow
    # profile would drop the user profile's slurm_account.
    user = yaml.safe_load((TEMPLATE / "config.yaml").read_text())
    workflow = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert set(workflow) == {"set-resources", "set-threads"}
    assert not set(user) & set(workflow)
    assert (TEMPLATE / user["slurm-partition-config"]).is_file()
    # A cpus_per_task or cpus_per_gpu would ask SLURM for other CPUs than the job's threads.
    for rule in workflow["set-resources"].values():
        assert not {"cpus_per_task", "cpus_per_gpu", "slurm_partition"} & set(rule)


def test_an_installed_package_ships_and_installs_the_template(tmp_path: Path) -> None:
    """The wheel holds the templates (package data): the subcommand works without the repository."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "unetflow", source / "unetflow", ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*build, "-w", str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("unetflow-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run(
        [sys.executable, "-m", "unetflow.cli", "install-profile", "slurm"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _files(tmp_path / "config" / "snakemake" / "slurm") == _files(TEMPLATE)
    assert (
        str(site / "unetflow" / "profile_templates" / "slurm")
        in subprocess.run(
            [sys.executable, "-c", "from unetflow import profiles; print(profiles.template('slurm'))"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


class _Resources(dict):  # type: ignore[type-arg]
    """A job's resources as the slurm executor reads them (`.get` and attributes)."""

    __getattr__ = dict.__getitem__


def test_training_on_every_gpu_of_a_node_is_one_slurm_task() -> None:
    """The workflow profile's train resources with gpu: 4 (docs/slurm.md: every GPU of a node), through the
    installed slurm executor's own sbatch builder: 4 GPUs and 32 CPUs in one task, not one task per GPU
    (plugin issues 316 and 459), which `tasks: 1` would still ask for."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    workflow = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    params = {
        "run_uuid": "u",
        "slurm_logfile": "log",
        "comment_str": "train",
        "account": "",
        "partition": "-p gpu",
        "workdir": "",
    }

    def sbatch(**resources: object) -> str:
        job = SimpleNamespace(resources=_Resources(runtime=720, **resources), threads=32)
        return get_submit_command(job, params) + set_gres_string(job)

    call = sbatch(**{**workflow["set-resources"]["train"], "gpu": 4})
    assert "--gpus=4" in call and "--cpus-per-task=32" in call, call
    assert "--ntasks" not in call, call  # one task (sbatch's default)
    trap = {key: value for key, value in workflow["set-resources"]["train"].items() if key != "tasks_per_gpu"}
    assert "--ntasks-per-gpu=1" in sbatch(**{**trap, "gpu": 4, "tasks": 1})
