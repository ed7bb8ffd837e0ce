"""The latency proxy: adds its delay, injects seeded faults at the asked rate, keeps connections
alive, streams chunked answers as they come, and carries real Rucio and MetaCat traffic."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from justin_flows.testing.latency_proxy import LatencyProxy
from justin_flows.testing.metacat_double import MetaCatDouble
from justin_flows.testing.rucio_server import RucioServer


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True
    connections: set[tuple[str, int]]
    hits: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # else each answer's body waits 40 ms for a delayed ACK

    def _count(self) -> None:
        server: _Upstream = self.server  # type: ignore[assignment]
        server.connections.add(self.client_address)
        server.hits += 1

    def do_GET(self) -> None:
        self._count()
        if self.path.startswith("/stream"):
            # three chunks, 0.3 s apart, like a server streaming a long listing
            self.send_response(200)
            self.send_header("Content-Type", "application/x-json-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                data = f'{{"n": {i}}}\n'.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = f"ok {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self._count()
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = b""
            while (size := int(self.rfile.readline().strip(), 16)) != 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream(("127.0.0.1", 0), _Handler)
    server.connections, server.hits = set(), 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: _Upstream) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_each_request_is_delayed_and_the_connections_are_kept_alive(upstream: _Upstream) -> None:
    with LatencyProxy(_url(upstream), delay_ms=50) as proxy, requests.Session() as session:
        assert proxy.url.startswith("http://127.0.0.1:")
        times = []
        for i in range(10):
            start = time.perf_counter()
            answer = session.get(f"{proxy.url}/item/{i}", timeout=5)
            times.append(time.perf_counter() - start)
            assert answer.status_code == 200 and answer.text == f"ok /item/{i}"
        assert min(times) >= 0.050
        assert sum(times) / len(times) < 0.5
        assert (proxy.requests, proxy.forwarded, proxy.faults_injected) == (10, 10, 0)
    assert len(upstream.connections) == 1, "one kept-alive upstream connection carried all ten requests"


def test_delay_is_configurable_and_zero_adds_nothing_measurable(upstream: _Upstream) -> None:
    with LatencyProxy(_url(upstream), delay_ms=0) as fast, LatencyProxy(_url(upstream), delay_ms=200) as slow:
        with requests.Session() as session:
            session.get(f"{fast.url}/warm", timeout=5)
            session.get(f"{slow.url}/warm", timeout=5)
            start = time.perf_counter()
            session.get(f"{fast.url}/x", timeout=5)
            fast_s = time.perf_counter() - start
            start = time.perf_counter()
            session.get(f"{slow.url}/x", timeout=5)
            slow_s = time.perf_counter() - start
    assert fast_s < 0.1 <= 0.2 <= slow_s < 1.0


def _outcomes(proxy: LatencyProxy, n: int) -> list[str]:
    seen = []
    with requests.Session() as session:
        for i in range(n):
            try:
                seen.append(str(session.get(f"{proxy.url}/r{i}", timeout=5).status_code))
            except requests.exceptions.ConnectionError:
                seen.append("reset")
    return seen


def _expected(seed: int, rate: float, kinds: tuple[str, ...], n: int) -> list[str]:
    """The proxy's documented draw: one random() and one choice() per request, in order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        roll, kind = rng.random(), rng.choice(kinds)
        out.append(kind if roll < rate else "200")
    return out


def test_faults_come_at_the_requested_rate_and_repeat_with_the_seed(upstream: _Upstream) -> None:
    kinds = ("500", "503", "reset")
    with LatencyProxy(_url(upstream), delay_ms=0, fault_rate=0.2, seed=7, kinds=kinds) as proxy:
        first = _outcomes(proxy, 300)
        injected = proxy.faults
        forwarded = proxy.forwarded
        proxy.set_faults(0.2, seed=7, kinds=kinds)  # same seed again: the same sequence
        second = _outcomes(proxy, 300)
    assert first == second == _expected(7, 0.2, kinds, 300)
    counts = Counter(first)
    faults = 300 - counts["200"]
    assert 0.15 * 300 <= faults <= 0.25 * 300
    assert {k: injected[k] for k in kinds} == {k: counts[k] for k in kinds}
    assert all(injected[k] > 0 for k in kinds)
    assert forwarded == counts["200"], "faulted requests never reach the upstream"


def test_a_stall_outlasts_the_client_timeout_and_the_request_is_not_forwarded(upstream: _Upstream) -> None:
    with LatencyProxy(_url(upstream), delay_ms=0, fault_rate=1.0, seed=1, kinds=("stall",), stall_seconds=2) as proxy:
        start = time.perf_counter()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(f"{proxy.url}/slow", timeout=0.3)
        assert 0.3 <= time.perf_counter() - start < 1.5
        assert proxy.faults["stall"] == 1 and proxy.forwarded == 0
        start = time.perf_counter()
    # stop() did not wait for the stalled connection's 2 s
    assert time.perf_counter() - start < 1.5
    assert upstream.hits == 0


def test_reset_after_forwarding_applies_the_request_but_loses_the_answer(upstream: _Upstream) -> None:
    with LatencyProxy(_url(upstream), delay_ms=0, fault_rate=1.0, seed=3, kinds=("reset_after",)) as proxy:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{proxy.url}/apply", data=b"x" * 10, timeout=5)
        assert (proxy.forwarded, proxy.faults["reset_after"]) == (1, 1)
    assert upstream.hits == 1


def test_chunked_answers_stream_through_as_they_arrive_and_chunked_bodies_go_up(upstream: _Upstream) -> None:
    with LatencyProxy(_url(upstream), delay_ms=0) as proxy:
        start = time.perf_counter()
        with requests.get(f"{proxy.url}/stream", stream=True, timeout=5) as answer:
            assert answer.headers["Content-Type"] == "application/x-json-stream"
            lines = answer.iter_lines()
            assert next(lines) == b'{"n": 0}'
            first = time.perf_counter() - start
            rest = list(lines)
        assert first < 0.25, "the first chunk arrived before the upstream sent the second"
        assert rest == [b'{"n": 1}', b'{"n": 2}']
        echoed = requests.post(f"{proxy.url}/echo", data=iter([b"ab", b"cd", b"ef"]), timeout=5)
        assert echoed.content == b"abcdef"


def test_oversized_heads_are_refused_and_the_proxy_binds_loopback_only(upstream: _Upstream) -> None:
    with LatencyProxy(_url(upstream), delay_ms=0) as proxy:
        answer = requests.get(f"{proxy.url}/big", headers={"X-Big": "y" * 70_000}, timeout=5)
        assert answer.status_code == 431
        assert proxy._server is not None
        assert {s.getsockname()[0] for s in proxy._server.sockets} == {"127.0.0.1"}
    assert upstream.hits == 0
    with pytest.raises(ValueError, match="fault_rate"):
        LatencyProxy(_url(upstream), fault_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        LatencyProxy(_url(upstream), fault_rate=0.1, kinds=("explode",))


def test_real_rucio_ping_and_list_rses_through_the_proxy(rucio_server: RucioServer, tmp_path: Path) -> None:
    from rucio.client import Client
    from rucio.client.pingclient import PingClient

    from tests.rucio_seed import add_rse, unique

    direct = Client()
    name = add_rse(direct, unique("PROXY_").upper(), tmp_path / "rse")
    with LatencyProxy(rucio_server.url, delay_ms=50) as proxy:
        kwargs = {"rucio_host": proxy.url, "auth_host": proxy.url, "account": rucio_server.root_account,
                  "auth_type": "userpass", "creds": rucio_server.root_creds}
        ping = PingClient(rucio_host=proxy.url, auth_host=proxy.url, auth_type="userpass", creds=rucio_server.root_creds)
        start = time.perf_counter()
        assert ping.ping()["version"] == "41.5.1"
        assert time.perf_counter() - start >= 0.050
        client = Client(**kwargs)
        through = sorted(r["rse"] for r in client.list_rses())  # application/x-json-stream
        assert name in through
        assert through == sorted(r["rse"] for r in direct.list_rses())
        assert client.list_rse_attributes(name) == direct.list_rse_attributes(name)
        raw = requests.get(f"{proxy.url}/rses/", headers={"X-Rucio-Auth-Token": client.auth_token}, timeout=10)
        assert raw.headers["Content-Type"].startswith("application/x-json-stream")
        assert raw.headers.get("Transfer-Encoding") == "chunked", "a streamed listing, relayed chunk by chunk"
        assert name in raw.text
        assert proxy.forwarded >= 4 and proxy.faults_injected == 0


def test_metacat_login_and_query_through_the_proxy(metacat_double: MetaCatDouble, tmp_home: Path) -> None:
    from metacat.webapi import MetaCatClient

    from tests.conftest import METACAT_PASSWORD, METACAT_USER
    from tests.rucio_seed import unique

    dataset = f"proxyns:{unique('ds')}"
    for i in range(25):
        metacat_double.seed_file("proxyns", f"{dataset.split(':')[1]}-f{i:02d}", 100 + i, {"core.run": i},
                                 datasets=[dataset])
    with LatencyProxy(metacat_double.server_url, delay_ms=50) as proxy:
        client = MetaCatClient(proxy.url_for(metacat_double.server_url),
                               auth_server_url=proxy.url_for(metacat_double.auth_url),
                               token_library=str(tmp_home / ".token_library"))
        user, _ = client.login_password(METACAT_USER, METACAT_PASSWORD)  # digest login through the proxy
        assert user == METACAT_USER
        start = time.perf_counter()
        files = list(client.query(f"files from {dataset} where core.run >= 5"))  # application/json-seq
        assert time.perf_counter() - start >= 0.050
        assert sorted(f["name"] for f in files) == [f"{dataset.split(':')[1]}-f{i:02d}" for i in range(5, 25)]
        assert {f["size"] for f in files} == {100 + i for i in range(5, 25)}
        assert proxy.forwarded >= 2
