"""A usage error of `rop` is one line on stderr and exit code 1, as every other error, with a
pointer to the command's help (argparse's own prints the whole usage block and exits 2)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli_harness import Cli


async def test_a_usage_error_is_one_line_naming_the_help() -> None:
    rop = Cli(dict(os.environ))
    code, out, err = await rop("status")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: the following arguments are required: workflow_id (see `rop status --help`)"
    ]
    code, _, err = await rop("reconcile", "--since", "yesterday")
    assert code == 1
    assert err.splitlines() == [
        "error: argument --since: invalid fromisoformat value: 'yesterday' "
        "(see `rop reconcile --help`)"
    ]
    code, _, err = await rop("no-such-command")
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.endswith("(see `rop --help`)\n")


async def test_an_empty_answer_says_so(database_url: str) -> None:
    rop = Cli.on_database(database_url)
    code, out, err = await rop("access-log", "rop-NOBODY-1")
    assert (code, out) == (0, "no access to rop-NOBODY-1 is recorded (is the workflow id right?)\n")
    code, out, err = await rop("tasks", "rop-NOBODY-1", "--failed")
    assert (code, out) == (0, "no open task of rop-NOBODY-1 that no channel could deliver\n"), err


async def test_the_local_norsk_helsenett_needs_the_source_tree(tmp_path: Path) -> None:
    rop = Cli(dict(os.environ))
    code, out, err = await rop("stack", "--local-nhn", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"error: {tmp_path} holds no nhn_local/: the local Norsk helsenett comes with the "
        "source tree (make run), not with the wheel"
    ]
