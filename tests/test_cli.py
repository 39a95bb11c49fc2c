"""The `unetflow` command: every argument explained, --version, and one line per error."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from unetflow.cli.main import build_parser, main, version


def test_every_argument_of_every_subcommand_has_a_help_line() -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {action.dest}"
        for name, sub in subparsers.choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []
    assert all(choice.help for choice in subparsers._choices_actions)  # each subcommand is described


def test_version_prints_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"unetflow {version()}" and version()[0].isdigit()


def test_quiet_silences_info_and_an_error_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    command = [sys.executable, "-m", "unetflow.cli", "-q", "weights", str(tmp_path / "none.zarr"), "w.zarr"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unetflow weights: error:") and "none.zarr" in lines[0]
