"""VOMS: ``voms-proxy-init`` with argv lists, writing to a path the caller chose.

Upstream (agents/justin-create-x509-proxies, reference §1) runs it once a day with no
retries. Here each run is tried up to ``retry.attempts`` times (3), but only when the
failure is **transient**, i.e. likely to go away if the same command runs a few seconds later:

* the command did not finish within the timeout (a VOMS server that accepts the connection
  and never answers: ``voms-proxy-init`` is given no ``-timeout`` of its own), or
* it exited 1 after failing to reach every VOMS server of the VO ("None of the contacted
  servers ... were capable of returning a valid AC", "Connection refused", a time-out, a
  name-resolution failure), and the output names no refusal by a server.

Everything else is permanent and not repeated, because the same inputs give the same answer:
exit 3 (the certificate or key cannot be read, is encrypted, or they do not match), "VOMS
Server for ... not known!" (vomses configuration), an expired host certificate, a server
refusing the identity or role ("User unknown to this VO", "Unable to satisfy ... Request",
"suspended"), a missing ``voms-proxy-init`` program (OSError).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from justin_flows.adapters.calls import ExternalService
from justin_flows.adapters.commands import CommandFailed, run_command
from justin_flows.settings import Settings, get_settings

SERVICE = "voms"

#: Output of a run that reached no VOMS server (lower-cased substrings).
_UNREACHABLE = (
    "none of the contacted servers",
    "connection refused",
    "connection timed out",
    "timed out",
    "temporary failure in name resolution",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "could not establish",
)
#: Output naming a refusal or a local fault that a repeat cannot fix.
_PERMANENT = (
    "unknown to this vo",
    "not a member",
    "unable to satisfy",
    "suspended",
    "not allowed",
    "expired",
    "not known!",
    "unable to find user certificate or key",
    "couldn't find valid credentials",
)


def is_transient(exc: BaseException) -> bool:
    """True for a time-out or a run that reached no VOMS server (see the module docstring)."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return True
    if isinstance(exc, CommandFailed):
        text = exc.output.lower()
        if any(marker in text for marker in _PERMANENT):
            return False
        return exc.returncode == 1 and any(marker in text for marker in _UNREACHABLE)
    return False


class VOMSAdapter:
    def __init__(
        self,
        settings: Settings | None = None,
        service: ExternalService | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)
        self.timeout_seconds = timeout_seconds or self.settings.proxies.command_timeout_seconds

    def proxy_init_argv(self, cert: Path, key: Path, voms: str, out: Path, valid_hours: int) -> list[str]:
        """The exact command line (upstream's options, in upstream's order)."""
        return [
            self.settings.proxies.voms_proxy_init,
            "-cert", str(cert),
            "-key", str(key),
            "-voms", voms,
            "-valid", f"{valid_hours}:0",
            "-out", str(out),
        ]

    def proxy_init(self, cert: Path, key: Path, voms: str, out: Path, valid_hours: int) -> None:
        """``voms-proxy-init -cert C -key K -voms V -valid H:0 -out O``; raises on failure.

        ``out`` is removed before every attempt (as upstream removes its tmp file first), so
        what is there afterwards was written by this attempt. Standard input is empty, so
        an encrypted key fails at once instead of waiting for a pass phrase.
        """
        argv = self.proxy_init_argv(cert, key, voms, out, valid_hours)

        def attempt() -> None:
            out.unlink(missing_ok=True)
            run_command(argv, timeout=self.timeout_seconds, stdin="")

        self.service.call("voms-proxy-init", attempt)
