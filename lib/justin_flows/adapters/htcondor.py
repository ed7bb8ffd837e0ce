"""HTCondor, at the command boundary (``condor_userprio``, ``condor_submit``).

Submit descriptions are built with the real ``htcondor2`` bindings elsewhere; this module
only runs the commands, with the bearer-token file in the environment and a timeout.
"""

from __future__ import annotations

import subprocess

from justin_flows.adapters.calls import ExternalService
from justin_flows.adapters.commands import CommandFailed, run_command
from justin_flows.settings import Settings, get_settings

SERVICE = "htcondor"


def is_transient(exc: BaseException) -> bool:
    """Only a time-out is retried: a command that answered has told us something final."""
    return isinstance(exc, subprocess.TimeoutExpired)


class HTCondorAdapter:
    """The project's only door to HTCondor."""

    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)

    @property
    def _env(self) -> dict[str, str]:
        return {"BEARER_TOKEN_FILE": str(self.settings.htcondor.bearer_token_file)}

    @property
    def collector(self) -> str:
        """The pool every command names with ``-pool``: upstream only ever uses ``collectors[0]``."""
        collectors = self.settings.htcondor.collectors
        if not collectors:
            raise ValueError("htcondor.collectors is empty: condor commands need a -pool collector")
        return collectors[0]

    def userprio_quotas(self) -> str:
        """Raw output of ``condor_userprio -pool <collector> -quotas -allusers`` (reference §2.3).

        A non-zero exit raises at once (``CommandFailed``: the pool answered); only a time-out
        (``command_timeout_seconds``, upstream 60 s) is retried.
        """
        cfg = self.settings.htcondor
        argv = [cfg.condor_userprio, "-pool", self.collector, "-quotas", "-allusers"]
        return self.service.call(
            "condor_userprio",
            lambda: run_command(argv, timeout=cfg.command_timeout_seconds, env=self._env).stdout,
        )

    def submit(self, schedd: str, description: str) -> str:
        """Run ``condor_submit -name <schedd> -pool <collector> -spool -terse`` once.

        Never retried here: a time-out may hide a cluster that was queued, and a second
        submit would double it (the caller records nothing and reports instead).
        """
        cfg = self.settings.htcondor
        argv = [cfg.condor_submit, "-name", schedd, "-pool", self.collector, "-spool", "-terse"]
        return self.service.call(
            "condor_submit",
            lambda: run_command(argv, timeout=cfg.command_timeout_seconds, stdin=description, env=self._env).stdout,
            attempts=1,
        )


__all__ = ["CommandFailed", "HTCondorAdapter"]
