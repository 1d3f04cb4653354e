"""Running the installed `rop` console script, as a user would, in the tests."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROP = str(Path(sys.executable).parent / "rop")


@dataclass(frozen=True)
class Cli:
    """Runs the installed `rop` console script with `env` as its whole environment."""

    env: dict[str, str]

    @classmethod
    def on_database(cls, database_url: str) -> Cli:
        """This process's environment, with `DATABASE_URL` set: for the database commands."""
        return cls({**os.environ, "DATABASE_URL": database_url})

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        """Exit code, standard output and standard error of `rop ARGS`."""
        process = await asyncio.create_subprocess_exec(
            ROP,
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()
