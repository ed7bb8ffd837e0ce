"""Fixtures for the reliability tests: a server that never answers, Rucio seen through another
address (a stall server or the latency proxy), and the environment a subprocess needs."""

from __future__ import annotations

import configparser
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from justin_flows.testing.rucio_server import RucioServer
from tests.conftest import reset_caches


class StallServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="stall-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._held.append(conn)  # read nothing, answer nothing, keep it open

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def stall_server() -> Iterator[StallServer]:
    server = StallServer()
    yield server
    server.close()


def write_rucio_cfg(path: Path, rucio_server: RucioServer, host_url: str) -> Path:
    """A client rucio.cfg like the server's own, but with ``host_url`` as rucio and auth host."""
    parser = configparser.ConfigParser()
    parser.read(rucio_server.client_config_path)
    parser["client"]["rucio_host"] = host_url
    parser["client"]["auth_host"] = host_url
    with path.open("w") as handle:
        parser.write(handle)
    return path


@contextmanager
def rucio_at(rucio_server: RucioServer, host_url: str, tmp_path: Path, **env: str) -> Iterator[Path]:
    """This process's Rucio client (and the settings) pointed at ``host_url`` for the block.

    Extra ``env`` (e.g. ``JUSTIN_RUCIO__TIMEOUT_SECONDS``) is set for the block too.
    """
    from rucio.common.config import clean_cached_config

    cfg = write_rucio_cfg(tmp_path / f"rucio-{abs(hash(host_url))}.cfg", rucio_server, host_url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUCIO_CONFIG", str(cfg))
        for key, value in env.items():
            mp.setenv(key, value)
        clean_cached_config()
        reset_caches()
        try:
            yield cfg
        finally:
            clean_cached_config()
    clean_cached_config()
    reset_caches()


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment (test DB, Rucio config, settings) for a child ``python -c``."""
    from tests.shared_data import REPO_ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "lib"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


class CannedServer:
    """A plain HTTP server on 127.0.0.1 answering every request with ``reply`` (status, headers,
    body): a stand-in for a misbehaving Rucio or MetaCat server. ``requests`` lists the paths."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.reply: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.requests: list[str] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                canned.requests.append(f"{self.command} {self.path}")
                status, headers, body = canned.reply
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def canned_server() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()
