"""A memcached stand-in on 127.0.0.1 (text protocol: version, get/gets, set/add, delete, touch,
flush_all), for the benchmark's Rucio server.

Production Rucio servers cache their configuration table, RSE descriptions and replica
distances in memcached. Without one, the benchmark server answers every request from its
database (and, with no GeoIP database, re-derives every replica's distance), which is
neither what production does nor what the benchmark means to measure. In memory, per
process, standard library only.
"""

from __future__ import annotations

import socketserver
import threading
import time

_MONTH = 30 * 24 * 3600


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[bytes, tuple[int, float, bytes, int]] = {}  # key -> flags, expires, data, cas
        self.cas = 0

    def expiry(self, exptime: int) -> float:
        if exptime == 0:
            return float("inf")
        return float(exptime) if exptime > _MONTH else time.time() + exptime

    def get(self, key: bytes) -> tuple[int, float, bytes, int] | None:
        item = self.items.get(key)
        if item is not None and item[1] <= time.time():
            del self.items[key]
            return None
        return item


class _Handler(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True

    def handle(self) -> None:
        store: _Store = self.server.store  # type: ignore[attr-defined]
        while True:
            line = self.rfile.readline()
            if not line:
                return
            parts = line.split()
            if not parts:
                continue
            command = parts[0].lower()
            out: list[bytes] = []
            noreply = parts[-1] == b"noreply"
            if command in (b"set", b"add", b"replace", b"cas"):
                key, flags, exptime, size = parts[1], int(parts[2]), int(parts[3]), int(parts[4])
                data = self.rfile.read(size + 2)[:size]
                with store.lock:
                    present = store.get(key) is not None
                    if (command == b"add" and present) or (command == b"replace" and not present):
                        out.append(b"NOT_STORED\r\n")
                    else:
                        store.cas += 1
                        store.items[key] = (flags, store.expiry(exptime), data, store.cas)
                        out.append(b"STORED\r\n")
            elif command in (b"get", b"gets"):
                with store.lock:
                    for key in parts[1:]:
                        item = store.get(key)
                        if item is not None:
                            flags, _, data, cas = item
                            extra = b" %d" % cas if command == b"gets" else b""
                            out.append(b"VALUE %s %d %d%s\r\n%s\r\n" % (key, flags, len(data), extra, data))
                out.append(b"END\r\n")
            elif command == b"delete":
                with store.lock:
                    found = store.items.pop(parts[1], None) is not None
                out.append(b"DELETED\r\n" if found else b"NOT_FOUND\r\n")
            elif command == b"touch":
                with store.lock:
                    item = store.get(parts[1])
                    if item is not None:
                        store.items[parts[1]] = (item[0], store.expiry(int(parts[2])), item[2], item[3])
                out.append(b"TOUCHED\r\n" if item is not None else b"NOT_FOUND\r\n")
            elif command == b"flush_all":
                with store.lock:
                    store.items.clear()
                out.append(b"OK\r\n")
            elif command == b"version":
                out.append(b"VERSION 1.6.0-standin\r\n")
                noreply = False
            elif command == b"quit":
                return
            else:
                out.append(b"ERROR\r\n")
                noreply = False
            if not noreply:
                self.wfile.write(b"".join(out))
                self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class MemcacheStandin:
    """``with MemcacheStandin() as mc: mc.url`` -> ``127.0.0.1:<port>``."""

    def __enter__(self) -> MemcacheStandin:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.store = _Store()  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="memcache-standin", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
