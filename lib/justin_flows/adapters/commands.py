"""Running an external command: argv lists only, a timeout always, output captured."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class CommandFailed(RuntimeError):
    """A command exited non-zero; the message names it and shows the start of its output."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        super().__init__(f"{argv[0]} exited {returncode}: {output.strip()[:300]}")


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> CommandResult:
    """Run ``argv`` (never through a shell) with stderr merged into stdout, like upstream."""
    if isinstance(argv, str):
        raise TypeError("argv must be a list of arguments, not a shell string")
    merged_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        list(argv),
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env=merged_env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout)
    return CommandResult(proc.returncode, proc.stdout)
