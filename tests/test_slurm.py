"""`snakemake --profile slurm` on a real one-node SLURM cluster (tests/slurm/setup.sh starts one).

Runs where a cluster can be made: as root with apt-get (CI), unless UNETFLOW_SLURM_TESTS=0. The profile is
installed as a user installs it (`unetflow install-profile slurm`, into a temporary XDG_CONFIG_HOME). One
chain of the whole workflow goes through the slurm executor with it, layered with tests/slurm/profile (this
cluster's status command) and the workflow profile tests/slurm/profile-cpu (the jobs' needs on its 2 CPUs
without GPU, in place of profiles/default); its training job is cancelled with scancel after its first
checkpoint and the same command is run again. A local run of the same config beside it is the reference the
SLURM outputs must equal. Copies of that run then train with two processes (one job of one task with both
CPUs), ask for a GPU the cluster lacks, and predict with dask workers that are SLURM jobs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import SLURM_STARTED, copy_workflow, session_pid

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "slurm"
CHAIN = HERE / "chain.yaml"
CHAIN_STEPS = yaml.safe_load(CHAIN.read_text())["train"]["steps"]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# The installed profile by name (found in $XDG_CONFIG_HOME/snakemake), the workflow's own profiles/default.
CLUSTER = ["--profile", "slurm", "--profile", str(HERE / "profile")]
CPU_CLUSTER = [*CLUSTER, "--workflow-profile", str(HERE / "profile-cpu")]
# The rule threads of the SLURM run (profile-cpu's set-threads), so the local reference computes the same.
LOCAL = ["--cores", "2", "--set-threads", "train=1", "predict=1"]
RUN_LIMIT = 420  # seconds for one snakemake call before `timeout` ends it (a hang fails, never blocks CI)
REFERENCE_LIMIT = 2 * RUN_LIMIT  # the local reference: the whole chain, beside the two SLURM calls


def _skip_reason() -> str | None:
    if os.environ.get("UNETFLOW_SLURM_TESTS", "1") == "0":
        return "UNETFLOW_SLURM_TESTS=0"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root to install and start a SLURM test cluster (tests/slurm/setup.sh)"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "needs apt-get (Debian/Ubuntu) to install slurm-wlm and munge"
    return None


SKIP = _skip_reason()


def _say(config: pytest.Config, text: str) -> None:
    """Print past pytest's output capture, so a reason to skip is seen in `make test`'s output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{text}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[float]:
    """The one-node test cluster, up from here to the end of the session (tests/conftest.py stops it: other
    files' Snakemake calls wait 9 s each while it is down); yields the seconds setup.sh took."""
    if SKIP:
        _say(request.config, f"SKIPPING tests/test_slurm.py: {SKIP}")
        pytest.skip(SKIP)
    start = time.monotonic()
    try:
        setup = subprocess.run(
            ["timeout", "-k", "10", "600", str(HERE / "setup.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:
        setup = subprocess.CompletedProcess([], 1, "", str(error))
    took = time.monotonic() - start
    if setup.returncode != 0:
        subprocess.run(["timeout", "-k", "5", "60", str(HERE / "stop.sh")], capture_output=True, check=False)
        output = (setup.stderr + setup.stdout).strip()
        why = next((line for line in output.splitlines() if "FAILED" in line), f"rc {setup.returncode}")
        reason = f"the SLURM test cluster did not come up (tests/slurm/setup.sh): {why}"
        banner = "!" * 80
        _say(request.config, f"{banner}\nSKIPPING tests/test_slurm.py: {reason}\n{output[-3000:]}\n{banner}")
        pytest.skip(reason)
    _say(request.config, f"{setup.stdout.strip()} (setup.sh wall time {took:.1f} s)")
    SLURM_STARTED.write_text(str(session_pid()))
    yield took


@pytest.fixture(scope="module")
def env(cluster: float, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a user who installed the profile: `unetflow install-profile slurm` wrote it to
    the Snakemake profile folder of a fresh XDG_CONFIG_HOME, where `--profile slurm` finds it."""
    config_home = tmp_path_factory.mktemp("config")
    environment = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    install = [sys.executable, "-m", "unetflow.cli", "install-profile", "slurm"]
    subprocess.run(install, env=environment, capture_output=True, text=True, timeout=120, check=True)
    assert (config_home / "snakemake" / "slurm" / "config.yaml").is_file()
    return environment


def _workflow_copy(path: Path) -> Path:
    """A copy of the workflow with the chain config, like test_workflow.py's tiny run."""
    copy_workflow(path)
    shutil.copy(CHAIN, path / "chain.yaml")
    return path


def _command(*args: str, limit: int = RUN_LIMIT) -> list[str]:
    """A snakemake call that `timeout` ends (SIGTERM, then SIGKILL 10 s later) instead of hanging."""
    return ["timeout", "-k", "10", str(limit), *SNAKEMAKE, "--configfile", "chain.yaml", *args]


@dataclass
class Chain:
    """A SLURM run of the chain, cancelled in training and run again, and the local run beside it."""

    work: Path
    local: Path
    env: dict[str, str]
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    cancelled: str
    seconds: dict[str, float] = field(default_factory=dict)


def _slurm_logs(work: Path, pattern: str) -> dict[str, Path]:
    """The plugin's SLURM logs (kept by slurm-keep-successful-logs) by job id: one file per SLURM job."""
    return {log.stem: log for log in sorted((work / ".snakemake" / "slurm_logs").glob(pattern))}


def _slurm_states(job_ids: list[str], field: str = "%T") -> dict[str, str]:
    """SLURM's own record of the jobs (squeue lists finished jobs for MinJobAge, an hour on this cluster):
    their state, or another squeue field (%P: the partition)."""
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", f"--format=%i|{field}", "--jobs", ",".join(job_ids)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return dict(line.split("|", 1) for line in out.split())


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return f"rc {result.returncode}\n{(result.stdout + result.stderr)[-5000:]}"


@pytest.fixture(scope="module")
def chain(
    cluster: float,
    env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Chain]:
    """The whole chain through SLURM; training is scancel'led after its first checkpoint, then rerun."""
    base = tmp_path_factory.mktemp("slurm")
    work, local = _workflow_copy(base / "slurm"), _workflow_copy(base / "local")
    seconds: dict[str, float] = {"setup.sh": cluster}
    start = time.monotonic()
    # The reference, beside the SLURM run (which mostly waits on the plugin's status checks), at the priority
    # of the SLURM jobs: `make test` runs other test files beside this one, and a niced reference starved.
    # It makes what test_slurm_outputs_equal_the_local_run compares (the metrics, from training, prediction
    # and segmentation), not the report and the bioimage.io package.
    with open(local / "run.log", "w") as log:
        reference = subprocess.Popen(
            _command(*LOCAL, "--", "results/metrics.json", limit=REFERENCE_LIMIT),
            cwd=local,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # --retries 0: the profile's `retries: 1` would resubmit the cancelled job within this run; the test
        # takes the path of a Snakemake that stopped (killed, or out of retries): the same command again.
        cmd = _command(*CPU_CLUSTER, "--retries", "0")
        with open(work / "first.log", "w") as log:
            first_run = subprocess.Popen(
                cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
            )
            checkpoint = work / "results" / "models" / "main" / "checkpoints" / "latest.pt"
            cancelled = ""
            while first_run.poll() is None and not cancelled:
                logs = _slurm_logs(work, "group_train*/*.log")
                if checkpoint.exists() and logs:
                    cancelled = next(iter(logs))
                    subprocess.run(["scancel", cancelled], check=True, timeout=30)
                time.sleep(0.1)
            first_run.wait(timeout=RUN_LIMIT + 20)
        first = subprocess.CompletedProcess(cmd, first_run.returncode, (work / "first.log").read_text(), "")
        assert cancelled, f"the training job never wrote a checkpoint while the run lasted:\n{_tail(first)}"
        seconds["first SLURM run (to the cancel)"] = time.monotonic() - start
        second = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
        seconds["whole SLURM chain"] = time.monotonic() - start
        assert second.returncode == 0, f"the rerun after the cancel failed:\n{_tail(second)}"
        reference.wait(timeout=REFERENCE_LIMIT + 20)
        seconds["local reference (in parallel)"] = time.monotonic() - start
        assert reference.returncode == 0, (local / "run.log").read_text()[-5000:]
    finally:
        if reference.poll() is None:
            reference.kill()
    timings = ", ".join(f"{what} {took:.0f} s" for what, took in seconds.items())
    _say(request.config, f"SLURM chain: {timings}")
    yield Chain(work, local, env, first, second, cancelled, seconds)


@pytest.mark.slow
def test_whole_chain_ran_as_slurm_jobs(chain: Chain) -> None:
    jobs = {
        "group_prep*/*.log": "rule synthesize:",
        "group_train*/*.log": "rule train:",
        "rule_predict/main_synthetic_*/*.log": "rule predict:",
        "group_post*/*.log": "rule evaluate:",
    }
    finished: list[str] = []
    for pattern, rule in jobs.items():
        logs = _slurm_logs(chain.work, pattern)
        assert logs, f"no SLURM job log {pattern}"
        for job_id, log in logs.items():
            text = log.read_text()
            assert rule in text and "--executor slurm-jobstep" in text, log
            if job_id != chain.cancelled:
                finished.append(job_id)
    states = _slurm_states(finished)
    assert states == dict.fromkeys(finished, "COMPLETED"), states
    # The partition the installed partitions.yaml chose for CPU jobs (the cluster's default is debug).
    assert _slurm_states(finished, "%P") == dict.fromkeys(finished, "cpu")
    assert (chain.work / "results" / "report" / "index.html").stat().st_size > 0
    out = chain.second.stdout + chain.second.stderr
    assert f"Using profiles slurm and {HERE / 'profile'} and workflow specific profile" in out


def test_the_profile_by_its_path_in_the_repository_sees_the_same_finished_run(chain: Chain) -> None:
    """`snakemake --profile profiles/slurm` (the template's copy in the repository, no install) plans the
    same workflow: after the run with the installed profile it has nothing to do."""
    explicit = ["--profile", str(ROOT / "profiles" / "slurm"), *CPU_CLUSTER[2:]]
    result = subprocess.run(
        _command("-n", *explicit, limit=120), cwd=chain.work, capture_output=True, text=True, check=False
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, _tail(result)
    assert f"Using profiles {ROOT / 'profiles' / 'slurm'} and" in out
    assert "Nothing to be done" in out


@pytest.mark.slow
def test_slurm_outputs_equal_the_local_run(chain: Chain) -> None:
    from unetflow.data import omezarr

    # Same seed, same rule threads, CPU: training (even across the cancel) and prediction are bit-identical.
    for name in ("metrics.json", "metrics/main.json", "metrics/main_slices.csv", "models/main/val_log.csv"):
        slurm, local = chain.work / "results" / name, chain.local / "results" / name
        assert slurm.read_text() == local.read_text(), name
    # The step log's step, loss and learning rate; its step_time and data_time columns are wall times.
    slurm_steps, local_steps = (
        [line.split(",")[:3] for line in (run / "results/models/main/train_log.csv").read_text().splitlines()]
        for run in (chain.work, chain.local)
    )
    assert slurm_steps[0] == ["step", "loss", "lr"] and len(slurm_steps) == 1 + CHAIN_STEPS
    assert slurm_steps == local_steps
    slurm_weights, local_weights = (
        torch.load(run / "results/models/main/model.pt", map_location="cpu")["model_state_dict"]
        for run in (chain.work, chain.local)
    )
    assert slurm_weights.keys() == local_weights.keys()
    for key, value in slurm_weights.items():
        assert torch.equal(value, local_weights[key]), key
    target = "results/predict/main/synthetic.zarr"
    slurm_probability = omezarr.open_image(chain.work / target)[:]
    local_probability = omezarr.open_image(chain.local / target)[:]
    assert slurm_probability.shape == (5, 96, 96)
    np.testing.assert_array_equal(slurm_probability, local_probability)


@pytest.mark.slow
def test_cancelled_training_resumes_from_its_checkpoint_on_rerun(chain: Chain) -> None:
    assert chain.first.returncode not in (0, 124, 137), _tail(chain.first)
    assert f"JOB {chain.cancelled} ON " in chain.first.stdout and "Error in group train" in chain.first.stdout
    assert _slurm_states([chain.cancelled]) == {chain.cancelled: "CANCELLED"}
    log = (chain.work / "results" / "logs" / "train" / "main.log").read_text()
    resumed = re.search(r"resuming from (\S+) at step (\d+) of (\d+)", log)
    assert resumed, log[-2000:]
    assert resumed.group(1).endswith("results/models/main/checkpoints/latest.pt")
    assert 0 < int(resumed.group(2)) < CHAIN_STEPS == int(resumed.group(3))
    assert len(_slurm_logs(chain.work, "group_train*/*.log")) == 2  # the cancelled job and the resumed one


@pytest.mark.slow
def test_block_split_prediction_ran_as_separate_slurm_jobs_into_one_zarr(chain: Chain) -> None:
    jobs = {
        group: _slurm_logs(chain.work, f"rule_predict/main_synthetic_{group}/*.log") for group in ("0", "1")
    }
    assert all(len(logs) == 1 for logs in jobs.values()), jobs
    assert len({job_id for logs in jobs.values() for job_id in logs}) == 2
    computed = 0
    for group in ("0", "1"):
        log = (chain.work / "results" / "logs" / "predict" / "main" / f"synthetic.{group}.log").read_text()
        assert f"group {int(group) + 1}/2:" in log, log[-2000:]  # each job predicted its own group
        counts = re.search(r"predicted \S+synthetic.zarr: \{'computed': (\d+), 'done': 0", log)
        assert counts and int(counts.group(1)) > 0, log[-2000:]
        computed += int(counts.group(1))
    summary = json.loads((chain.work / "results" / "predict" / "main" / "synthetic.json").read_text())
    assert summary["blocks"] == computed  # the two jobs wrote disjoint blocks covering the one array
    flags = chain.work / "results" / "predict" / "main" / "synthetic.blocks"
    assert sorted(flag.name for flag in flags.iterdir()) == ["0.done", "1.done"]


@pytest.mark.slow
def test_gpu_request_on_a_cluster_without_gpus_fails_saying_so(chain: Chain, tmp_path: Path) -> None:
    # The workflow profile's train needs (gpu: 1, 8 threads) and the installed profile's partitions.yaml
    # (a GPU job goes to partition gpu), only the status command of this cluster added: sbatch refuses the
    # job at submission, and snakemake stops with sbatch's reason.
    work = tmp_path / "gpu"
    shutil.copytree(chain.work, work, symlinks=True)
    target = "results/models/main/model.pt"
    result = subprocess.run(
        _command(*CLUSTER, "--forcerun", "train", "--", target, limit=120),
        cwd=work,
        env=chain.env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode not in (0, 124, 137), _tail(result)  # 124/137: it hung until `timeout`
    assert "SLURM sbatch failed" in out, out[-4000:]
    assert "Invalid generic resource (gres) specification" in out
    assert "--gpus=1" in out and "--cpus-per-task=8" in out and "-p gpu" in out
    assert "--ntasks-per-gpu" not in out  # one task however many GPUs (profiles/default: tasks_per_gpu 0)
    assert not _slurm_logs(work, "rule_train/*/*.log")  # refused at submission: no job ever ran


def _job_record(job_id: str) -> dict[str, str]:
    """SLURM's record of a job (`scontrol show job`, while squeue still lists it) as key=value pairs."""
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


@pytest.mark.slow
def test_two_process_training_is_one_slurm_job_of_one_task(chain: Chain, tmp_path: Path) -> None:
    """train.cpu_processes 2 (the CPU form of train.gpus: the same launch and DDP code) with the rule's
    threads at 2: ONE SLURM job of one task with both CPUs, whose train step starts the two processes
    itself; Snakemake ran the rule once, not once per task."""
    work = tmp_path / "two"
    shutil.copytree(chain.work, work, symlinks=True)
    config = yaml.safe_load(CHAIN.read_text())
    config["train"] |= {
        "cpu_processes": 2,
        "batch_size": 2,
        "steps": 20,
        "val_every": 10,
        "checkpoint_every": 10,
    }
    (work / "chain.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = set(_slurm_logs(work, "group_train*/*.log"))
    target = "results/models/main/model.pt"
    command = _command(*CPU_CLUSTER, "--set-threads", "train=2", "--forcerun", "train", "--", target)
    result = subprocess.run(command, cwd=work, env=chain.env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, _tail(result)
    jobs = {job: log for job, log in _slurm_logs(work, "group_train*/*.log").items() if job not in before}
    assert len(jobs) == 1, jobs  # one job
    ((job_id, job_log),) = jobs.items()
    record = _job_record(job_id)
    assert (record["NumTasks"], record["CPUs/Task"], record["NumNodes"]) == ("1", "2", "1"), record
    assert record["JobState"] == "COMPLETED", record
    # The batch script's Snakemake names the rule (`rule train:`), the job step it starts with srun runs it
    # (`localrule train:`): once, not once per task.
    assert job_log.read_text().count("localrule train:") == 1, job_log.read_text()[-3000:]
    log = (work / "results" / "logs" / "train" / "main.log").read_text()
    assert log.count("INFO unetflow.steps.train: training on synthetic") == 1, log[-3000:]
    assert log.count("training with 2 processes (CPU, gloo, 1 torch thread each)") == 1, log[-3000:]
    model = torch.load(work / target, map_location="cpu", weights_only=True)
    assert model["processes"] == 2 and model["step"] in (10, 20)


@pytest.mark.slow
def test_dask_slurm_workers_predict_what_the_local_run_did(chain: Chain, tmp_path: Path) -> None:
    """predict.scheduler distributed, cluster kind slurm: predict runs on the head node as the client of
    dask-jobqueue worker jobs, which write the same array as the local run's threads."""
    from unetflow.data import omezarr

    work = tmp_path / "distributed"
    shutil.copytree(chain.work, work, symlinks=True)
    config = yaml.safe_load(CHAIN.read_text())
    config["predict"] |= {
        "scheduler": "distributed",
        "cluster": {"kind": "slurm", "workers": 2, "threads": 1, "memory": "1GB", "queue": "debug"},
    }
    config["predict"]["cluster"] |= {"walltime": "00:10:00", "timeout": 180}
    # Key order kept: Snakemake compares params as ordered mappings (a reorder reruns the whole chain).
    (work / "chain.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    predict_jobs = set(_slurm_logs(work, "rule_predict/*/*.log"))
    # The prediction's summary as the target: the prediction and its finalization run again, not what the
    # chain test already ran from them (segmentation, metrics, report, export).
    summary = "results/predict/main/synthetic.json"
    result = subprocess.run(
        _command(*CPU_CLUSTER, "--", summary),
        cwd=work,
        env=chain.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, _tail(result)
    out = result.stdout + result.stderr
    assert "rule train:" not in out and "rule report:" not in out  # only the prediction ran again
    assert "predict_finalize" in out
    assert set(_slurm_logs(work, "rule_predict/*/*.log")) == predict_jobs  # no predict job went to SLURM
    log = (work / "results" / "logs" / "predict" / "main" / "synthetic.0.log").read_text()
    assert "#SBATCH -p debug" in log and "distributed scheduler" in log, log[-3000:]
    listed = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name=dask-worker", "--format=%i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert len(listed) >= 2, listed  # the worker jobs were SLURM jobs
    for group in ("0", "1"):  # each block group's client had its own workers
        assert (work / "results" / "logs" / "dask" / "main" / f"synthetic.{group}").is_dir()
    target = "results/predict/main/synthetic.zarr"
    np.testing.assert_array_equal(
        omezarr.open_image(work / target)[:], omezarr.open_image(chain.local / target)[:]
    )


def test_dask_worker_job_slurm_refuses_is_one_clear_error(cluster: float, tmp_path: Path) -> None:
    from unetflow.errors import InputError
    from unetflow.predict.cluster import ClusterConfig, open_client

    config = ClusterConfig(kind="slurm", queue="nowhere", timeout=30)
    with (
        pytest.raises(InputError, match=r"SLURM refuses the dask worker job .*[Ii]nvalid partition"),
        open_client(config, log_directory=tmp_path),
    ):
        pass
    assert list(tmp_path.iterdir()) == []  # the checked job script is gone, no job was submitted
