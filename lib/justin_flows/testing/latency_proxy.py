"""A loopback HTTP reverse proxy that adds latency and, by seed, injects faults.

Put it in front of one upstream (the real Rucio server, the MetaCat double) and point the
client at ``proxy.url_for(upstream_url)``. Every request waits ``delay_ms`` (default 50 ms)
before it is forwarded, so a benchmark sees wide-area round trips on a single machine.
With ``fault_rate`` > 0, that fraction of requests gets a fault instead, chosen by a
``random.Random(seed)`` drawn once per request in arrival order, so a fixed seed and a fixed
request sequence give the same faults every time:

``"500"`` / ``"503"``
    an HTTP error answer (the request never reaches the upstream);
``"reset"``
    the connection is reset (TCP RST) without an answer;
``"stall"``
    no answer for ``stall_seconds`` (longer than the client's timeout), then the connection
    is closed;
``"reset_after"`` (not in the default kinds)
    the request *is* forwarded and applied upstream, then the answer is lost to a reset:
    what a client retrying a non-idempotent call must survive.

Counters: ``requests`` (all requests read), ``forwarded`` and ``faults`` (per kind).

HTTP/1.1 keep-alive on both sides, request bodies by ``Content-Length`` or chunked, and
responses streamed as they arrive: chunked (Rucio's ``application/x-json-stream`` listings),
``Content-Length`` (the MetaCat double's ``application/json-seq``) or close-delimited
(HTTP/1.0 servers). It listens on 127.0.0.1 only, handles at most ``max_connections``
client connections at once and refuses oversized headers (431) or bodies (413). Standard
library only (asyncio on one background thread); ``stop()`` closes every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FAULT_KINDS", "DEFAULT_KINDS", "LatencyProxy"]

FAULT_KINDS = ("500", "503", "reset", "stall", "reset_after")
DEFAULT_KINDS = ("500", "503", "reset", "stall")
LOOPBACK = "127.0.0.1"
MAX_HEADER_BYTES = 64 * 1024
_PIECE = 64 * 1024
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "upgrade"}
)


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Message:
    """A request or response head: the first line and the headers in order."""

    def __init__(self, first_line: str, headers: list[tuple[str, str]]) -> None:
        self.first_line = first_line
        self.headers = headers

    def get(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        name = name.lower()
        return {
            t.strip().lower() for key, value in self.headers if key.lower() == name for t in value.split(",") if t.strip()
        }

    @property
    def chunked(self) -> bool:
        return "chunked" in self.tokens("transfer-encoding")

    @property
    def content_length(self) -> int | None:
        value = self.get("content-length")
        if value is None:
            return None
        try:
            length = int(value.strip())
        except ValueError:
            raise _BadRequest(400, f"bad Content-Length {value!r}") from None
        if length < 0:
            raise _BadRequest(400, f"bad Content-Length {value!r}")
        return length


def _parse_head(raw: bytes) -> _Message:
    try:
        text = raw.decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400, "undecodable head") from None
    lines = text.split("\r\n")
    first = lines[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise _BadRequest(400, f"bad header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return _Message(first, headers)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The bytes up to and including the blank line; None on a clean EOF before any byte."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise _BadRequest(400, "connection closed inside the head") from None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "request head too large") from None


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A whole chunked body, re-encoded as received (size lines, data, trailers)."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        parts.append(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(400, "bad chunk size") from None
        if size == 0:
            while True:  # trailers, up to the blank line
                trailer = await reader.readuntil(b"\r\n")
                parts.append(trailer)
                if trailer == b"\r\n":
                    return b"".join(parts)
        total += size
        if total > limit:
            raise _BadRequest(413, "request body too large")
        parts.append(await reader.readexactly(size + 2))


class LatencyProxy:
    """A reverse proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``; https also works).

    Use as a context manager, or ``start()`` and ``stop()``. ``set_faults()`` changes the
    fault settings between phases of a test (it restarts the seeded sequence).
    """

    def __init__(
        self,
        upstream: str,
        *,
        delay_ms: float = 50.0,
        fault_rate: float = 0.0,
        seed: int | None = None,
        kinds: Sequence[str] = DEFAULT_KINDS,
        stall_seconds: float = 5.0,
        max_connections: int = 128,
        max_body_bytes: int = 64 * 1024 * 1024,
        upstream_timeout: float = 600.0,
        idle_timeout: float = 120.0,
        upstream_ssl: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s)://host:port URL, got {upstream!r}")
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.upstream = upstream
        self._scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._upstream_netloc = parts.netloc
        self._upstream_ssl = upstream_ssl if upstream_ssl is not None else (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self.delay_ms = float(delay_ms)
        self.stall_seconds = float(stall_seconds)
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout
        self.idle_timeout = idle_timeout
        self._port = port
        self._counter_lock = threading.Lock()
        self._requests = 0
        self._forwarded = 0
        self._faults: Counter[str] = Counter()
        self.set_faults(fault_rate, seed=seed, kinds=kinds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------ settings and counters

    def set_faults(self, fault_rate: float, *, seed: int | None = None, kinds: Sequence[str] = DEFAULT_KINDS) -> None:
        """Inject a fault into ``fault_rate`` (0..1) of the following requests, of ``kinds``."""
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown or (fault_rate > 0 and not kinds):
            raise ValueError(f"unknown fault kinds {unknown}; known: {FAULT_KINDS}")
        with self._counter_lock:
            self.fault_rate = float(fault_rate)
            self.kinds = kinds
            self.seed = seed
            self._rng = random.Random(seed)

    def _draw(self) -> str | None:
        """One draw per request, in arrival order: the fault to inject, or None."""
        with self._counter_lock:
            self._requests += 1
            if self.fault_rate <= 0:
                return None
            roll = self._rng.random()
            kind = self._rng.choice(self.kinds)  # drawn every time, so the sequence is stable
            if roll >= self.fault_rate:
                return None
            self._faults[kind] += 1
            return kind

    @property
    def requests(self) -> int:
        with self._counter_lock:
            return self._requests

    @property
    def forwarded(self) -> int:
        with self._counter_lock:
            return self._forwarded

    @property
    def faults(self) -> Counter[str]:
        """Faults injected so far, by kind."""
        with self._counter_lock:
            return Counter(self._faults)

    @property
    def faults_injected(self) -> int:
        with self._counter_lock:
            return sum(self._faults.values())

    def reset_counters(self) -> None:
        with self._counter_lock:
            self._requests = self._forwarded = 0
            self._faults.clear()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LatencyProxy is not running: call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url_for(self, upstream_url: str) -> str:
        """``upstream_url`` (on the upstream) as seen through the proxy: same path and query."""
        parts = urlsplit(upstream_url)
        return urlunsplit(("http", f"{LOOPBACK}:{self.port}", parts.path, parts.query, parts.fragment))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("LatencyProxy is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        thread = threading.Thread(target=run, name=f"latency-proxy-{self._upstream_port}", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        ready.wait(30)
        if failure:
            self._thread = self._loop = None
            thread.join(5)
            raise failure[0]

    async def _open(self) -> None:
        self._slots = asyncio.Semaphore(self.max_connections)
        self._server = await asyncio.start_server(
            self._serve, host=LOOPBACK, port=self._port, limit=MAX_HEADER_BYTES, backlog=self.max_connections,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def stop(self) -> None:
        """Stop listening, close every connection (stalled ones too) and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._loop = self._thread = None
        self._server = None

    def __enter__(self) -> LatencyProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ one client connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._slots is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            async with self._slots:
                while True:
                    keep, upstream = await self._one_request(reader, writer, upstream)
                    if not keep:
                        break
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if upstream is not None:
                upstream[1].transport.abort()
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _one_request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[bool, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """Serve one request; returns (keep the client connection, upstream connection)."""
        try:
            raw = await asyncio.wait_for(_read_head(reader), self.idle_timeout)
            if raw is None:
                return False, upstream
            request = _parse_head(raw[:-4])
            method, target, version = self._request_line(request.first_line)
            if request.chunked:
                body = await _read_chunked(reader, self.max_body_bytes)
            else:
                length = request.content_length or 0
                if length > self.max_body_bytes:
                    raise _BadRequest(413, "request body too large")
                body = await reader.readexactly(length) if length else b""
        except _BadRequest as exc:
            await self._answer(writer, exc.status, exc.reason, keep=False)
            return False, upstream

        client_keep = self._wants_keep_alive(request, version)
        fault = self._draw()
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)
            return False, upstream
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000.0)
        if fault == "reset":
            self._reset(writer)
            return False, upstream
        if fault in ("500", "503"):
            status = int(fault)
            await self._answer(writer, status, f"fault injected by LatencyProxy: {status}", keep=client_keep)
            return client_keep, upstream

        # forward, on the kept upstream connection or a new one (one retry if a kept one went stale)
        head = self._upstream_head(method, target, request, body)
        for attempt in (1, 2):
            fresh = upstream is None
            if upstream is None:
                upstream = await self._connect()
            up_reader, up_writer = upstream
            try:
                up_writer.write(head + body)
                await up_writer.drain()
                raw_response = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), self.upstream_timeout)
                break
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                up_writer.transport.abort()
                upstream = None
                if fresh or attempt == 2:
                    await self._answer(writer, 502, "upstream closed the connection", keep=False)
                    return False, None
        with self._counter_lock:
            self._forwarded += 1
        assert upstream is not None
        response = _parse_head(raw_response[:-4])
        status = self._status(response.first_line)
        if fault == "reset_after":
            await self._relay_body(method, status, response, up_reader, None)
            up_writer.transport.abort()
            self._reset(writer)
            return False, None
        upstream_keep, client_keep = await self._relay(
            method, status, response, up_reader, writer, client_keep
        )
        if not upstream_keep:
            up_writer.transport.abort()
            upstream = None
        return client_keep, upstream

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _request_line(line: str) -> tuple[str, str, str]:
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, f"bad request line {line[:80]!r}")
        return parts[0], parts[1], parts[2]

    @staticmethod
    def _status(line: str) -> int:
        try:
            return int(line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ConnectionError(f"bad status line from upstream: {line[:80]!r}") from None

    @staticmethod
    def _wants_keep_alive(message: _Message, version: str) -> bool:
        tokens = message.tokens("connection")
        if version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def _upstream_head(self, method: str, target: str, request: _Message, body: bytes) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._upstream_netloc}"]
        for name, value in request.headers:
            low = name.lower()
            if low in _HOP_BY_HOP or low == "host":
                continue
            lines.append(f"{name}: {value}")
        lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(
            asyncio.open_connection(
                self._upstream_host, self._upstream_port, ssl=self._upstream_ssl, limit=MAX_HEADER_BYTES,
                server_hostname=self._upstream_host if self._upstream_ssl else None,
            ),
            30,
        )

    async def _relay(
        self,
        method: str,
        status: int,
        response: _Message,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_keep: bool,
    ) -> tuple[bool, bool]:
        """Send the response head and stream the body; returns (upstream reusable, client kept)."""
        version = response.first_line.split(" ", 1)[0]
        no_body = method == "HEAD" or 100 <= status < 200 or status in (204, 304)
        delimited_by_close = not no_body and not response.chunked and response.content_length is None
        upstream_keep = not delimited_by_close and self._wants_keep_alive(response, version)
        client_keep = client_keep and not delimited_by_close
        lines = [response.first_line]
        lines += [f"{n}: {v}" for n, v in response.headers if n.lower() not in ("connection", "keep-alive")]
        lines.append("Connection: " + ("keep-alive" if client_keep else "close"))
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
        await self._relay_body(method, status, response, up_reader, writer, no_body=no_body)
        await writer.drain()
        return upstream_keep, client_keep

    async def _relay_body(
        self,
        method: str,
        status: int,
        response: _Message,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        *,
        no_body: bool | None = None,
    ) -> None:
        """Copy the body as it arrives (to ``writer``, or nowhere when it is None)."""
        if no_body is None:
            no_body = method == "HEAD" or 100 <= status < 200 or status in (204, 304)
        if no_body:
            return

        async def send(data: bytes) -> None:
            if writer is not None and data:
                writer.write(data)
                await writer.drain()

        timeout = self.upstream_timeout
        if response.chunked:
            while True:
                line = await asyncio.wait_for(up_reader.readuntil(b"\r\n"), timeout)
                await send(line)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ConnectionError("bad chunk size from upstream") from None
                if size == 0:
                    while True:
                        trailer = await asyncio.wait_for(up_reader.readuntil(b"\r\n"), timeout)
                        await send(trailer)
                        if trailer == b"\r\n":
                            return
                remaining = size + 2  # the data and its CRLF
                while remaining:
                    piece = await asyncio.wait_for(up_reader.read(min(remaining, _PIECE)), timeout)
                    if not piece:
                        raise ConnectionError("upstream closed inside a chunk")
                    remaining -= len(piece)
                    await send(piece)
        elif response.content_length is not None:
            remaining = response.content_length
            while remaining:
                piece = await asyncio.wait_for(up_reader.read(min(remaining, _PIECE)), timeout)
                if not piece:
                    raise ConnectionError("upstream closed inside the body")
                remaining -= len(piece)
                await send(piece)
        else:
            while True:
                piece = await asyncio.wait_for(up_reader.read(_PIECE), timeout)
                if not piece:
                    return
                await send(piece)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, text: str, *, keep: bool) -> None:
        reasons = {400: "Bad Request", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
                   500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        body = (text + "\n").encode()
        head = (
            f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
