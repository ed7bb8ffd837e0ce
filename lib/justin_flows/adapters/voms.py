"""VOMS: ``voms-proxy-init`` with argv lists, writing to a path the caller chose."""

from __future__ import annotations

import subprocess
from pathlib import Path

from justin_flows.adapters.calls import ExternalService
from justin_flows.adapters.commands import run_command
from justin_flows.settings import Settings, get_settings

SERVICE = "voms"


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, subprocess.TimeoutExpired)


class VOMSAdapter:
    def __init__(self, settings: Settings | None = None, service: ExternalService | None = None) -> None:
        self.settings = settings or get_settings()
        self.service = service or ExternalService(SERVICE, self.settings.retry, is_transient)

    def proxy_init(self, cert: Path, key: Path, voms: str, out: Path, valid_hours: int) -> None:
        """``voms-proxy-init -cert C -key K -voms V -valid H:0 -out O``; raises on failure."""
        argv = [
            self.settings.proxies.voms_proxy_init,
            "-cert", str(cert),
            "-key", str(key),
            "-voms", voms,
            "-valid", f"{valid_hours}:0",
            "-out", str(out),
        ]
        self.service.call("voms-proxy-init", lambda: run_command(argv, timeout=120))
