"""A MetaCat server double on loopback, faithful at the wire level to MetaCat 4.1.4.

Tests run the real ``metacat-client`` (Python API and CLI) and justIN's raw-urllib finder
against it. The real server cannot run in CI, so this double copies what the client can
observe: status codes, content types, body shapes, the login handshakes and the server's
quirks. Only the standard library is used, plus pyjwt to sign tokens and the installed
client's own ``metacat.mql`` to parse MQL.

Deliberate scope limits: no X.509 login (plain HTTP only), no named queries, categories or
dataset hierarchies, and MQL is limited to ``files from ns:ds[, ...] [where ...] [ordered]
[skip n] [limit n]``; anything else gets a 400, as a compile error on the real server would.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
import time
import types
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

import jwt

__all__ = ["MetaCatDouble", "RecordedRequest", "REALM", "SERVER_VERSION", "TOKEN_ISSUER"]

REALM = "metacat"
SERVER_VERSION = "4.1.4"
TOKEN_ISSUER = "metacat-double"
TOKEN_LIFETIME_S = 7 * 24 * 3600

# The real server (webpie) labels bodies it sends without an explicit type as HTML;
# errors and login replies carry this type, so clients see the same header here.
_HTML = "text/html; charset=UTF-8"
_TEXT = "text/plain; charset=UTF-8"
_JSON = "application/json"
# The client's dataset-files reader compares this type for equality: no parameters allowed.
_JSON_SEQ = "application/json-seq"
INVALID_METADATA = 488

_CHECKSUM_LENGTHS = {"adler32": 8, "md5": 32, "sha256": 64}
_HEX_DIGITS = frozenset("0123456789abcdef")
_DIGEST_FIELD = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')

_AUTH_ROUTES = ("auth", "verify", "whoami", "mydn")


class RecordedRequest(NamedTuple):
    """One request as the double saw it; ``path`` excludes the query string."""

    method: str
    path: str
    status: int


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


class _Abort(Exception):
    """Ends a handler early with a finished reply (an error, usually)."""

    def __init__(self, reply: _Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _text(status: int, message: str, content_type: str = _HTML) -> _Reply:
    return _Reply(status, message.encode("utf-8"), content_type)


def _json(obj: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(obj).encode("utf-8"), _JSON)


def _json_seq(records: Iterable[Any]) -> _Reply:
    body = "".join(f"\x1e{json.dumps(record)}\n" for record in records)
    return _Reply(200, body.encode("utf-8"), _JSON_SEQ)


def _fail(status: int, message: str) -> _Abort:
    return _Abort(_text(status, message))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _checksum_problems(checksums: Any) -> list[dict[str, str]]:
    """The real server's checksum checks: lowercase hex, and a fixed length for known types."""
    if not isinstance(checksums, dict):
        return []
    problems: list[dict[str, str]] = []
    for kind, value in checksums.items():
        kind = str(kind).lower()
        value = str(value)
        expected = _CHECKSUM_LENGTHS.get(kind)
        if expected is not None and len(value) != expected:
            problems.append(
                {"name": f"checksum {kind}", "reason": f"value is wrong length {len(value)} should be {expected}"}
            )
        for char in value:
            if char not in _HEX_DIGITS:
                problems.append({"name": f"checksum {kind}", "reason": f"contains invalid digit {char}"})
    return problems


def _did_parts(did: str, default_namespace: str | None = None) -> tuple[str, str]:
    namespace, sep, name = did.partition(":")
    if not sep:
        namespace, name = default_namespace or "", did
    if not namespace or not name:
        raise ValueError(f"Invalid namespace:name specification: {did}")
    return namespace, name


def _auto_name(pattern: str, fid: str) -> str:
    """Expands the ``auto_name`` placeholders the real server understands."""
    clock = int(time.time() * 1000)
    u = uuid.uuid4().hex
    return (
        pattern.replace("$clock3", "%03d" % (clock % 1000))
        .replace("$clock6", "%06d" % (clock % 1000000))
        .replace("$clock9", "%09d" % (clock % 1000000000))
        .replace("$clock", str(clock))
        .replace("$uuid8", u[-8:])
        .replace("$uuid16", u[-16:])
        .replace("$uuid", u)
        .replace("$fid", fid)
    )


_mql_lock = threading.Lock()
_mql_module: types.ModuleType | None = None


def _mql() -> types.ModuleType:
    """Imports ``metacat.mql`` on first use.

    The package imports the server-only ``wsdbtools`` at module level without using it to
    parse, so a stub module stands in when the real one is absent.
    """
    global _mql_module
    with _mql_lock:
        if _mql_module is None:
            if "wsdbtools" not in sys.modules:
                try:
                    import wsdbtools  # type: ignore[import-not-found]  # noqa: F401
                except ImportError:
                    stub = types.ModuleType("wsdbtools")
                    stub.ConnectionPool = object  # type: ignore[attr-defined]
                    sys.modules["wsdbtools"] = stub
            import metacat.mql
            import metacat.mql.meta_evaluator  # noqa: F401

            _mql_module = metacat.mql
        return _mql_module


@dataclass
class _Namespace:
    name: str
    owner_user: str | None
    owner_role: str | None
    creator: str
    description: str | None
    created_timestamp: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner_user": self.owner_user,
            "owner_role": self.owner_role,
            "creator": self.creator,
            "description": self.description,
            "created_timestamp": self.created_timestamp,
        }


@dataclass
class _Dataset:
    namespace: str
    name: str
    creator: str
    created_timestamp: float
    frozen: bool = False
    monotonic: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    file_meta_requirements: dict[str, Any] = field(default_factory=dict)
    updated_timestamp: float | None = None
    updated_by: str | None = None
    members: dict[str, None] = field(default_factory=dict)  # an ordered set of fids

    @property
    def did(self) -> str:
        return f"{self.namespace}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "frozen": self.frozen,
            "monotonic": self.monotonic,
            "metadata": copy.deepcopy(self.metadata),
            "creator": self.creator,
            "created_timestamp": self.created_timestamp,
            "file_meta_requirements": copy.deepcopy(self.file_meta_requirements),
            "description": self.description,
            "file_count": len(self.members),
            "updated_timestamp": self.updated_timestamp,
            "updated_by": self.updated_by,
        }


@dataclass
class _File:
    fid: str
    namespace: str
    name: str
    size: int | None
    checksums: dict[str, Any]
    metadata: dict[str, Any]
    creator: str | None
    created_timestamp: float
    updated_timestamp: float | None
    updated_by: str | None = None
    retired: bool = False
    retired_by: str | None = None
    retired_timestamp: float | None = None
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    @property
    def did(self) -> str:
        return f"{self.namespace}:{self.name}"


class _Epoch(float):
    """A timestamp with the ``epoch()`` method MetaEvaluator calls on it."""

    def epoch(self) -> float:
        return float(self)


class _FileView:
    """The attribute names MetaEvaluator reads from a server-side file object."""

    def __init__(self, f: _File) -> None:
        self.Name = f.name
        self.Namespace = f.namespace
        self.Size = f.size
        self.Creator = f.creator
        self.CreatedTimestamp = _Epoch(f.created_timestamp)
        self.Retired = f.retired
        self.RetiredBy = f.retired_by
        self.RetiredTimestamp = f.retired_timestamp
        self.UpdatedBy = f.updated_by
        self.UpdatedTimestamp = f.updated_timestamp
        self.Checksums = f.checksums
        self._metadata = f.metadata

    def metadata(self) -> dict[str, Any]:
        return self._metadata


@dataclass
class _Request:
    method: str
    target: str  # the raw request target: path plus query string
    route: str
    params: dict[str, str]
    headers: Message
    body: bytes

    def json_body(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(400, f"Invalid JSON in request body: {exc}") from None

    def flag(self, name: str, default: str = "no") -> bool:
        return self.params.get(name, default) == "yes"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], double: MetaCatDouble) -> None:
        super().__init__(address, _Handler)
        self.double = double


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes each connection after its reply, so stop() leaves no live keep-alive
    # sockets that could still be answered by a stopped double.
    protocol_version = "HTTP/1.0"
    server_version = "MetaCatDouble/" + SERVER_VERSION

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        double = cast(_Server, self.server).double
        reply = double._handle(self.command, self.path, self.headers, self._read_body())
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: tests read ``MetaCatDouble.requests`` instead of stderr."""


class MetaCatDouble:
    """A loopback MetaCat server (data and auth) with hooks for tests.

    Use as a context manager or call ``start()``/``stop()``. All state lives in memory and is
    guarded by one lock, so handler threads and test code can touch it concurrently.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, prefix: str = "/app") -> None:
        self._host = host
        self._port = port
        self._prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # The real server signs with sha256(secret); the same construction keeps HS256 key
        # length warnings away and makes tokens of different doubles mutually invalid.
        self._key = hashlib.sha256(secrets.token_bytes(32)).digest()
        self._users: dict[str, str] = {}  # username -> HA1 hex
        self._nonces: set[str] = set()
        self._namespaces: dict[str, _Namespace] = {}
        self._datasets: dict[tuple[str, str], _Dataset] = {}
        self._files: dict[str, _File] = {}
        self._by_did: dict[tuple[str, str], str] = {}
        self._requests: list[RecordedRequest] = []
        self._failures: dict[str, deque[int]] = {}
        self._routes: dict[str, Callable[[_Request], _Reply]] = {
            "auth": self._auth,
            "verify": self._verify,
            "whoami": self._whoami,
            "mydn": self._mydn,
            "version": self._version,
            "namespace": self._namespace,
            "namespaces": self._namespaces_list,
            "create_namespace": self._create_namespace,
            "create_dataset": self._create_dataset,
            "dataset": self._dataset,
            "datasets": self._datasets_list,
            "dataset_files": self._dataset_files,
            "declare_files": self._declare_files,
            "file": self._file,
            "files": self._files_lookup,
            "query": self._query,
            "add_files": self._add_files,
            "update_file": self._update_file,
            "retire_file": self._retire_file,
        }

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Binds the port and serves from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("MetaCatDouble is already running")
        server = _Server((self._host, self._port), self)
        self._port = server.server_address[1]
        # A short poll interval keeps stop() fast; the default half second adds up in tests.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="metacat-double", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Stops serving and releases the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MetaCatDouble:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _origin(self) -> str:
        if self._server is None:
            raise RuntimeError("MetaCatDouble is not running: call start() first")
        return f"http://{self._host}:{self._port}"

    @property
    def server_url(self) -> str:
        """The data server URL, without a trailing slash (the client does not normalise it)."""
        return self._origin() + self._prefix

    @property
    def auth_url(self) -> str:
        return self._origin() + "/auth"

    @property
    def port(self) -> int:
        self._origin()
        return self._port

    # ----------------------------------------------------------------- test hooks

    def add_user(self, name: str, password: str) -> None:
        """Registers a user for digest login; only the HA1 hash is kept, as the server does."""
        with self._lock:
            self._users[name] = _md5(f"{name}:{REALM}:{password}")

    def mint_token(self, username: str, lifetime_s: float = TOKEN_LIFETIME_S) -> str:
        """A token the double accepts (if ``username`` is a user), shaped like the real server's."""
        now = int(time.time())
        payload = {
            "iat": now,
            "nbf": now,
            "sub": username,
            "exp": now + int(lifetime_s),
            "jti": secrets.token_hex(4),
            "iss": TOKEN_ISSUER,
        }
        return jwt.encode(payload, self._key, algorithm="HS256")

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request served so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, operation: str, status: int, count: int = 1) -> None:
        """Makes the next ``count`` requests to route ``operation`` answer ``status`` in plain text.

        Route names are the last path segment: ``declare_files``, ``query``, ``add_files``,
        ``auth`` (logins), ``verify`` and so on. Queued failures are served before real work.
        """
        if operation not in self._routes:
            raise ValueError(f"unknown MetaCat route {operation!r}; known: {sorted(self._routes)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._failures.setdefault(operation, deque()).extend([status] * count)

    def get_file_record(self, did: str) -> dict[str, Any] | None:
        """The stored file with metadata, provenance and datasets, or None."""
        with self._lock:
            f = self._find_file({"did": did})
            return None if f is None else self._file_json(f, metadata=True, provenance=True, datasets=True)

    def get_dataset_record(self, did: str) -> dict[str, Any] | None:
        with self._lock:
            ds = self._datasets.get(_did_parts(did))
            return None if ds is None else ds.to_json()

    def dataset_members(self, did: str) -> list[str]:
        """DIDs of the dataset's files in the order they were added; KeyError if it is absent."""
        with self._lock:
            ds = self._datasets[_did_parts(did)]
            return [self._files[fid].did for fid in ds.members]

    def namespace_names(self) -> list[str]:
        with self._lock:
            return sorted(self._namespaces)

    def seed_dataset(self, did: str, metadata: dict[str, Any] | None = None, *, creator: str = "seed") -> None:
        """Creates a dataset (and its namespace) directly, bypassing HTTP and tokens."""
        namespace, name = _did_parts(did)
        with self._lock:
            self._ensure_namespace(namespace, creator)
            if (namespace, name) not in self._datasets:
                self._datasets[(namespace, name)] = _Dataset(
                    namespace, name, creator, time.time(), metadata=dict(metadata or {})
                )

    def seed_file(
        self,
        namespace: str,
        name: str,
        size: int,
        metadata: dict[str, Any] | None = None,
        datasets: Iterable[str] = (),
        *,
        checksums: dict[str, str] | None = None,
        parents: Iterable[str] = (),
        creator: str = "seed",
    ) -> str:
        """Inserts a file directly so a test has data to query; returns its fid.

        Missing namespaces and datasets (given as ``ns:name``) are created; ``parents`` are
        DIDs of files already present.
        """
        with self._lock:
            if (namespace, name) in self._by_did:
                raise ValueError(f"{namespace}:{name} already exists")
            self._ensure_namespace(namespace, creator)
            now = time.time()
            f = _File(
                self._new_fid(), namespace, name, size, dict(checksums or {}), dict(metadata or {}), creator, now, now
            )
            parent_fids = []
            for parent in parents:
                found = self._find_file({"did": parent})
                if found is None:
                    raise ValueError(f"parent {parent} does not exist")
                parent_fids.append(found.fid)
            self._insert_file(f)
            self._link_parents(f, parent_fids, replace=True)
            for did in datasets:
                self.seed_dataset(did, creator=creator)
                self._datasets[_did_parts(did)].members[f.fid] = None
            return f.fid

    # ----------------------------------------------------------------- dispatch

    def _handle(self, method: str, target: str, headers: Message, body: bytes) -> _Reply:
        split = urlsplit(target)
        segments = [s for s in split.path.split("/") if s]
        # Route on the last two segments so any URL prefix (…/dune_meta_prod/app) works.
        area, name = (["", ""] + segments)[-2:]
        if area not in ("data", "auth"):
            route, handler = "", None
        else:
            route = name
            handler = self._routes.get(name) if (area == "auth") == (name in _AUTH_ROUTES) else None
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        request = _Request(method, target, route, params, headers, body)
        with self._lock:
            pending = self._failures.get(route)
            if pending:
                status = pending.popleft()
                reply = _text(status, f"Injected failure {status} for {route}", _TEXT)
            elif handler is None:
                reply = (
                    _text(501, f"{route} is not implemented by the MetaCat double")
                    if area == "data" and route
                    else _text(404, "Not found")
                )
            else:
                try:
                    reply = handler(request)
                except _Abort as abort:
                    reply = abort.reply
                except Exception as exc:  # a bug in the double: make it loud, not a hang
                    reply = _text(500, f"MetaCat double internal error: {exc!r}", _TEXT)
            self._requests.append(RecordedRequest(method, split.path, reply.status))
        return reply

    # ----------------------------------------------------------------- auth

    def _token_reply(self, username: str) -> _Reply:
        return _Reply(200, b"", _HTML, {"X-Authentication-Token": self.mint_token(username)})

    def _user_from_token(self, encoded: str | None) -> tuple[str | None, str]:
        if not encoded:
            return None, "Token not found"
        try:
            payload = jwt.decode(
                encoded.strip(),
                self._key,
                algorithms=["HS256"],
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            return None, "Token expired"
        except jwt.PyJWTError:
            return None, "Token verification failed"
        user = payload["sub"]
        if user not in self._users:
            return None, f"Unknown user {user}"
        return user, ""

    def _require_user(self, request: _Request) -> str:
        user, error = self._user_from_token(request.headers.get("X-Authentication-Token"))
        if user is None:
            raise _fail(401, error)
        return user

    def _auth(self, request: _Request) -> _Reply:
        method = request.params.get("method", "password")
        if method == "ldap":
            # The client always tries LDAP first and falls back to digest on any non-200.
            return _text(401, "LDAP is not configured\n")
        if method == "digest":
            return self._auth_digest(request)
        if method == "token":
            return self._auth_token(request)
        if method == "x509":
            return _text(401, "X.509 authentication needs HTTPS, which the MetaCat double does not serve\n")
        return _text(401, f"Unknown authentication method {method}\n")

    def _auth_digest(self, request: _Request) -> _Reply:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("digest "):
            nonce = secrets.token_urlsafe(16)
            self._nonces.add(nonce)
            challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
            return _Reply(401, b"Authorization required", _HTML, {"WWW-Authenticate": challenge})
        fields = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _DIGEST_FIELD.finditer(header[len("digest "):])}
        ha1 = self._users.get(fields.get("username", ""))
        acceptable = (
            ha1 is not None
            and all(fields.get(k) for k in ("nonce", "uri", "response", "nc", "cnonce"))
            and fields.get("realm") == REALM
            and fields.get("qop") == "auth"
            and fields.get("algorithm", "MD5").upper() == "MD5"
            and fields["nonce"] in self._nonces
            and fields["uri"] == request.target
        )
        if acceptable:
            ha2 = _md5(f"{request.method}:{fields['uri']}")
            expected = _md5(f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
            if hmac.compare_digest(expected, fields["response"]):
                return self._token_reply(fields["username"])
        # No new challenge here: requests' digest handler would otherwise retry the login.
        return _text(401, "Authentication failed\n")

    def _auth_token(self, request: _Request) -> _Reply:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        user, _ = self._user_from_token(encoded if scheme.lower() == "bearer" else None)
        username = request.params.get("username")
        if user is None or (username and username != user):
            return _text(401, "Authentication failed\n")
        return self._token_reply(user)

    def _verify(self, request: _Request) -> _Reply:
        user, error = self._user_from_token(request.headers.get("X-Authentication-Token"))
        return _text(200, "OK", _TEXT) if user else _text(401, error)

    def _whoami(self, request: _Request) -> _Reply:
        user, _ = self._user_from_token(request.headers.get("X-Authentication-Token"))
        return _text(200, user or "", _TEXT)

    def _mydn(self, request: _Request) -> _Reply:
        return _text(400, "Use HTTPS connection\n")

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _split_did(did: str | None, default_namespace: str | None = None) -> tuple[str, str]:
        """``ns:name`` from a request parameter; a 400 reply when it is missing or malformed."""
        if not did:
            raise _fail(400, "Dataset not specified")
        try:
            return _did_parts(did, default_namespace)
        except ValueError as exc:
            raise _fail(400, str(exc)) from None

    def _ensure_namespace(self, name: str, creator: str) -> None:
        if name not in self._namespaces:
            self._namespaces[name] = _Namespace(name, creator, None, creator, None, time.time())

    def _new_fid(self) -> str:
        """16 base64 characters from a uuid4, without ``+``/``/``, like real fids."""
        while True:
            raw = base64.b64encode(uuid.uuid4().bytes).decode("ascii")
            fid = "".join(c for c in raw if c.isalnum())[:16]
            if len(fid) == 16 and fid not in self._files:
                return fid

    def _insert_file(self, f: _File) -> None:
        self._files[f.fid] = f
        self._by_did[(f.namespace, f.name)] = f.fid

    def _link_parents(self, f: _File, parent_fids: list[str], *, replace: bool) -> None:
        if replace:
            for old in f.parents:
                if old in self._files and f.fid in self._files[old].children:
                    self._files[old].children.remove(f.fid)
            f.parents = []
        for fid in parent_fids:
            if fid not in f.parents:
                f.parents.append(fid)
                self._files[fid].children.append(f.fid)

    def _find_file(self, spec: Any, default_namespace: str | None = None) -> _File | None:
        """Resolves ``{"fid"}``, ``{"did"}``, ``{"namespace","name"}`` or a bare fid/DID string."""
        if isinstance(spec, str):
            spec = {"did": spec} if ":" in spec else {"fid": spec}
        if not isinstance(spec, dict):
            return None
        if spec.get("fid"):
            return self._files.get(str(spec["fid"]))
        namespace, name = spec.get("namespace", default_namespace), spec.get("name")
        if name is None and spec.get("did"):
            namespace, _, name = str(spec["did"]).rpartition(":")
        fid = self._by_did.get((namespace or "", name or ""))
        return self._files.get(fid) if fid else None

    def _file_json(
        self, f: _File, *, metadata: bool = False, provenance: bool = False, datasets: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fid": f.fid,
            "namespace": f.namespace,
            "name": f.name,
            "retired": f.retired,
            "retired_by": f.retired_by,
            "updated_by": f.updated_by,
            "retired_timestamp": f.retired_timestamp,
            "updated_timestamp": f.updated_timestamp,
            "created_timestamp": f.created_timestamp,
        }
        if f.checksums is not None:
            out["checksums"] = dict(f.checksums)
        if f.size is not None:
            out["size"] = f.size
        if f.creator is not None:
            out["creator"] = f.creator
        if metadata:
            out["metadata"] = copy.deepcopy(f.metadata)
        if provenance:
            out["parents"] = [{"fid": fid} for fid in f.parents]
            out["children"] = [{"fid": fid} for fid in f.children]
        if datasets:
            out["datasets"] = [
                {"namespace": ds.namespace, "name": ds.name} for ds in self._datasets.values() if f.fid in ds.members
            ]
        return out

    def _run_file_query(self, text: str, default_namespace: str | None, include_retired: bool) -> list[_File]:
        """Evaluates the supported MQL subset over the in-memory datasets."""
        mql = _mql()
        try:
            query = mql.MQLQuery.parse(text, default_namespace=default_namespace)
        except mql.MQLSyntaxError as exc:
            raise _fail(400, f"MQLSyntaxError: {exc.Message}") from None
        except Exception as exc:  # the tree converter raises plain exceptions
            raise _fail(400, f"MQLCompilationError: {exc}") from None
        unsupported = _fail(
            400,
            "MQLCompilationError: the MetaCat double only runs "
            f"'files from ns:ds[, ...] [where ...] [ordered] [skip n] [limit n]', not: {text}",
        )
        if query.Type != "file" or getattr(query.Tree, "T", None) != "basic_file_query":
            raise unsupported
        basic = query.Tree["query"]
        selectors = basic.DatasetSelectors or []
        if not selectors or any(
            s.Pattern or s.WithChildren or s.Recursively or s.Where is not None or not s.Namespace for s in selectors
        ):
            raise unsupported
        seen: dict[str, None] = {}
        for selector in selectors:
            ds = self._datasets.get((selector.Namespace, selector.Name))
            if ds is not None:
                seen.update(dict.fromkeys(ds.members))
        files = [self._files[fid] for fid in seen]
        if not include_retired:
            files = [f for f in files if not f.retired]
        if basic.Wheres is not None:
            evaluator = mql.meta_evaluator.MetaEvaluator()
            try:
                files = [f for f in files if evaluator.evaluate_meta_expression(_FileView(f), basic.Wheres)]
            except Exception as exc:
                raise _fail(400, f"MQLExecutionError: {exc}") from None
        skip, limit = basic.Skip or 0, basic.Limit
        return files[skip:] if limit is None else files[skip : skip + limit]

    # ----------------------------------------------------------------- data: reads

    def _version(self, request: _Request) -> _Reply:
        return _text(200, SERVER_VERSION, _TEXT)

    def _namespace(self, request: _Request) -> _Reply:
        ns = self._namespaces.get(request.params.get("name", ""))
        return _json(ns.to_json()) if ns else _text(404, "Not found", _TEXT)

    def _namespaces_list(self, request: _Request) -> _Reply:
        if request.body:
            names = request.json_body()
            if not isinstance(names, list):
                raise _fail(400, "Namespace list must be a JSON list")
            found = [self._namespaces[n] for n in names if n in self._namespaces]
        else:
            found = sorted(self._namespaces.values(), key=lambda ns: ns.name)
        return _json([ns.to_json() for ns in found])

    def _dataset(self, request: _Request) -> _Reply:
        ds = self._datasets.get(self._split_did(request.params.get("dataset")))
        if ds is None:
            raise _fail(404, "Dataset not found")
        return _json(ds.to_json())  # the GET shape: requirements {} rather than null

    def _datasets_list(self, request: _Request) -> _Reply:
        return _json([ds.to_json() for ds in self._datasets.values()])

    def _dataset_files(self, request: _Request) -> _Reply:
        ds = self._datasets.get(self._split_did(request.params.get("dataset")))
        if ds is None:
            raise _fail(404, "Dataset not found")
        with_metadata = request.flag("with_metadata")
        files = [self._files[fid] for fid in ds.members]
        if not request.flag("include_retired_files"):
            files = [f for f in files if not f.retired]
        return _json_seq(self._file_json(f, metadata=with_metadata) for f in files)

    def _file(self, request: _Request) -> _Reply:
        p = request.params
        if p.get("fid"):
            spec: dict[str, Any] = {"fid": p["fid"]}
        elif p.get("did"):
            spec = {"did": p["did"]}
        elif p.get("name") and p.get("namespace"):
            spec = {"namespace": p["namespace"], "name": p["name"]}
        else:
            raise _fail(400, "File not specified: give fid, did, or namespace and name")
        f = self._find_file(spec)
        if f is None:
            raise _fail(404, "File not found")
        return _json(
            self._file_json(
                f,
                metadata=request.flag("with_metadata", "yes"),
                provenance=request.flag("with_provenance", "yes"),
                datasets=request.flag("with_datasets"),
            )
        )

    def _files_lookup(self, request: _Request) -> _Reply:
        specs = request.json_body()
        if not isinstance(specs, list):
            raise _fail(400, "File list must be a JSON list")
        found = [f for f in (self._find_file(spec) for spec in specs) if f is not None]
        return _json(
            [
                self._file_json(f, metadata=request.flag("with_metadata"), provenance=request.flag("with_provenance"))
                for f in found
            ]
        )

    def _query(self, request: _Request) -> _Reply:
        """MQL comes from the body only: ``trimquery`` is a cut-down copy and justIN's finder
        posts with a form content type, so neither the URL nor the Content-Type is trusted."""
        p = request.params
        summary = p.get("summary")
        if summary not in (None, "count", "keys"):
            raise _fail(400, f"Unsupported summary type: {summary}")
        namespace = p.get("namespace") or None
        save_as, add_to = p.get("save_as"), p.get("add_to")
        target: _Dataset | None = None
        new_dataset: tuple[str, str] | None = None
        user = ""
        if save_as or add_to:
            user = self._require_user(request)
            ds_ns, ds_name = self._split_did(save_as or add_to, namespace)
            if ds_ns not in self._namespaces:
                raise _fail(404, f"Namespace {ds_ns} does not exist")
            if save_as:
                if (ds_ns, ds_name) in self._datasets:
                    raise _fail(409, f"Dataset {ds_ns}:{ds_name} already exists")
                new_dataset = (ds_ns, ds_name)
            else:
                target = self._datasets.get((ds_ns, ds_name))
                if target is None:
                    raise _fail(404, f"Dataset {ds_ns}:{ds_name} does not exist")
        text = request.body.decode("utf-8", errors="replace")
        if not text:
            return _json([])
        files = self._run_file_query(text, namespace, request.flag("include_retired_files"))
        if summary == "count":
            return _json({"count": len(files), "total_size": sum(f.size or 0 for f in files)})
        if summary == "keys":
            return _json(sorted({key for f in files for key in f.metadata}))
        if new_dataset is not None:
            target = self._datasets[new_dataset] = _Dataset(*new_dataset, creator=user, created_timestamp=time.time())
        if target is not None:
            target.members.update(dict.fromkeys(f.fid for f in files))
        with_meta, with_provenance = request.flag("with_meta"), request.flag("with_provenance")
        return _json_seq(self._file_json(f, metadata=with_meta, provenance=with_provenance) for f in files)

    # ----------------------------------------------------------------- data: writes

    def _create_namespace(self, request: _Request) -> _Reply:
        user = self._require_user(request)
        name = request.params.get("name")
        if not name:
            raise _fail(400, "Namespace name not specified")
        if name in self._namespaces:
            raise _fail(400, "Namespace already exists")
        owner_role = request.params.get("owner_role")
        ns = _Namespace(
            name,
            None if owner_role else user,
            owner_role,
            user,
            request.params.get("description"),
            time.time(),
        )
        self._namespaces[name] = ns
        return _json(ns.to_json())

    def _create_dataset(self, request: _Request) -> _Reply:
        user = self._require_user(request)
        if not request.body:
            raise _fail(400, "Dataset parameters are not specified")
        params = request.json_body()
        if not isinstance(params, dict) or not params.get("namespace") or not params.get("name"):
            raise _fail(400, "Dataset namespace and name are required")
        key = (str(params["namespace"]), str(params["name"]))
        if key[0] not in self._namespaces:
            raise _fail(404, "Namespace not found")
        if key in self._datasets:
            raise _fail(409, "Already exists")
        files: list[_File] = []
        if params.get("files_query"):
            files = self._run_file_query(str(params["files_query"]), key[0], False)
        metadata = params.get("metadata") or {}
        for k in metadata:
            if "." not in k:
                raise _fail(400, f"Metadata parameter without a category: {k}")
        # The server reads file_meta_requirements, not the metadata_requirements the client sends.
        requirements = params.get("file_meta_requirements")
        ds = _Dataset(
            key[0],
            key[1],
            user,
            time.time(),
            frozen=bool(params.get("frozen", False)),
            monotonic=bool(params.get("monotonic", False)),
            metadata=copy.deepcopy(metadata),
            description=params.get("description", "") or "",
            file_meta_requirements=copy.deepcopy(requirements) if isinstance(requirements, dict) else {},
        )
        ds.members.update(dict.fromkeys(f.fid for f in files))
        self._datasets[key] = ds
        reply = ds.to_json()
        # The create reply echoes the request's value (null from the client); a GET shows {}.
        reply["file_meta_requirements"] = requirements
        return _json(reply)

    def _declare_files(self, request: _Request) -> _Reply:
        """Declares files into an existing dataset, with the real server's check order and codes."""
        user = self._require_user(request)
        default_namespace = request.params.get("namespace")
        ds_ns, ds_name = self._split_did(request.params.get("dataset"), default_namespace)
        if ds_ns not in self._namespaces:
            raise _fail(404, f"Namespace {ds_ns} does not exist")
        ds = self._datasets.get((ds_ns, ds_name))
        if ds is None:
            raise _fail(400, f"Dataset {ds_ns}:{ds_name} does not exist")  # 400, not 404, on 4.1.4
        items = request.json_body() if request.body else []
        if not items:
            raise _fail(400, "Empty file list")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise _fail(400, "File list must be a JSON list of objects")

        checksum_errors = [
            {"index": index, "message": "Metadata checksum validation errors", "metadata_errors": problems}
            for index, item in enumerate(items)
            if (problems := _checksum_problems(item.get("checksums")))
        ]
        if checksum_errors:
            return _json({"metadata_errors": checksum_errors}, INVALID_METADATA)

        errors: list[dict[str, Any]] = []
        planned: list[tuple[_File, bool]] = []
        now = time.time()
        for index, item in enumerate(items):
            namespace = item.get("namespace", default_namespace)
            name = item.get("name")
            fid = item.get("fid")
            if item.get("size") is None:
                errors.append({"message": "Missing file size", "fid": fid, "index": index})
                continue
            if name is None and item.get("did"):
                did_ns, _, name = str(item["did"]).rpartition(":")
                namespace = did_ns or namespace
            if name is None and "auto_name" not in item:
                errors.append({"message": "Missing name and auto_name", "index": index, "fid": fid})
                continue
            if not namespace:
                errors.append({"message": "Missing namespace", "index": index, "fid": fid})
                continue
            if namespace not in self._namespaces:
                errors.append({"index": index, "fid": fid, "message": f"Namespace {namespace} does not exist"})
                continue
            metadata = item.get("metadata") or {}
            for k in metadata:
                if "." not in k:
                    errors.append({"index": index, "message": f"Metadata parameter without a category: {k}"})
            fid = fid or self._new_fid()
            if name is None:
                name = _auto_name(item.get("auto_name") or "$fid", fid)
            parent_fids: list[str] = []
            for parent in item.get("parents") or []:
                found = self._find_file(parent, default_namespace)
                if found is None:
                    errors.append({"index": index, "message": f"Can not get file id for parent: {parent}"})
                    break
                parent_fids.append(found.fid)
            checksums = item.get("checksums")
            f = _File(fid, namespace, name, int(item["size"]), dict(checksums or {}), copy.deepcopy(metadata),
                      user, now, now, parents=parent_fids)
            planned.append((f, checksums is not None))
        if errors:
            return _json({"message": "Invalid file data", "metadata_errors": errors}, INVALID_METADATA)

        if request.flag("dry_run"):
            # The real server answers a dry run with 202, which the 4.1.5 client treats as an
            # error; keeping it shows callers the failure they would meet in production.
            return _json([{"name": f.name, "namespace": f.namespace, "fid": f.fid} for f, _ in planned], 202)

        existing = []
        for f, _ in planned:
            if (f.namespace, f.name) in self._by_did:
                existing.append(f.did)
            elif f.fid in self._files:
                existing.append(self._files[f.fid].did)
        if existing:
            # declare_files(as_required=...) in the client parses exactly this layout.
            raise _fail(409, "The following files already exist:" + "".join(f"\n  {did}" for did in existing))
        dids = [(f.namespace, f.name) for f, _ in planned]
        fids = [f.fid for f, _ in planned]
        if len(set(dids)) != len(dids) or len(set(fids)) != len(fids):
            raise _fail(409, "Integrity error: the request declares the same file twice")

        out = []
        for f, had_checksums in planned:
            parents, f.parents = f.parents, []
            self._insert_file(f)
            self._link_parents(f, parents, replace=False)
            ds.members[f.fid] = None
            # The reply is built from the request, not re-read from the database: no
            # timestamps, and checksums only when the request carried them.
            record = self._file_json(f, metadata=True)
            record["created_timestamp"] = record["updated_timestamp"] = None
            if not had_checksums:
                record.pop("checksums", None)
            out.append(record)
        return _json(out)

    def _add_files(self, request: _Request) -> _Reply:
        self._require_user(request)
        params = request.json_body()
        if not isinstance(params, dict):
            raise _fail(400, "Unsupported request data format")
        file_list, query_text = params.get("file_list"), params.get("query")
        default_namespace = params.get("namespace")
        if not file_list and not query_text:
            raise _fail(400, "No files to add")
        if file_list and query_text:
            raise _fail(400, "Either file list or query must be specified, but not both")
        ds_ns, ds_name = self._split_did(request.params.get("dataset"), default_namespace)
        ds = self._datasets.get((ds_ns, ds_name))
        if ds is None:
            raise _fail(404, "Dataset not found")
        if ds.frozen:
            raise _fail(403, "Dataset is frozen")
        if query_text:
            files = self._run_file_query(str(query_text), default_namespace, False)
        else:
            files = []
            for spec in file_list:
                f = self._find_file(spec, default_namespace)
                if f is None:
                    raise _fail(404, f"File not found: {spec}")
                files.append(f)
        added = 0
        for f in files:
            if f.fid not in ds.members:
                ds.members[f.fid] = None
                added += 1
        return _json({"files_added": added})

    def _resolve_all(self, specs: Any) -> list[str]:
        if not isinstance(specs, list):
            raise _fail(400, "File list must be a JSON list")
        fids = []
        for spec in specs:
            f = self._find_file(spec)
            if f is None:
                raise _fail(404, f"File {spec} not found")
            fids.append(f.fid)
        return fids

    def _update_file(self, request: _Request) -> _Reply:
        user = self._require_user(request)
        data = request.json_body()
        if not isinstance(data, dict):
            raise _fail(400, "Unsupported request data format")
        f = self._find_file(data)
        if f is None:
            raise _fail(404, "File not found")
        replace = data.get("mode", "add-update") != "add-update"
        errors: list[dict[str, Any]] = []
        new_metadata = new_checksums = None
        if "metadata" in data:
            if not isinstance(data["metadata"], dict):
                raise _fail(400, "metadata must be a JSON object")
            errors += [
                {"name": k, "message": f"Metadata parameter without a category: {k}"}
                for k in data["metadata"]
                if "." not in k
            ]
            new_metadata = copy.deepcopy(data["metadata"]) if replace else {**f.metadata, **data["metadata"]}
        if "checksums" in data:
            if not isinstance(data["checksums"], dict):
                raise _fail(400, "checksums must be a JSON object")
            errors += _checksum_problems(data["checksums"])
            new_checksums = dict(data["checksums"]) if replace else {**(f.checksums or {}), **data["checksums"]}
        if errors:
            return _json({"message": "Metadata validation errors", "metadata_errors": errors}, INVALID_METADATA)
        parents = self._resolve_all(data["parents"]) if "parents" in data else None
        children = self._resolve_all(data["children"]) if "children" in data else None

        if new_metadata is not None:
            f.metadata = new_metadata
        if new_checksums is not None:
            f.checksums = new_checksums
        if parents is not None:
            self._link_parents(f, parents, replace=replace)
        if children is not None:
            if replace:
                for child in list(f.children):
                    self._files[child].parents.remove(f.fid)
                f.children = []
            for child in children:
                self._link_parents(self._files[child], [f.fid], replace=False)
        f.size = data.get("size", f.size or 0)
        # The real reply is rendered before the bookkeeping columns are re-read, so it still
        # shows the previous updated_by/updated_timestamp; a later GET shows the new ones.
        reply = self._file_json(f, metadata=True, provenance=True)
        f.updated_by, f.updated_timestamp = user, time.time()
        return _json(reply)

    def _retire_file(self, request: _Request) -> _Reply:
        user = self._require_user(request)
        data = request.json_body()
        if not isinstance(data, dict) or "retire" not in data:
            raise _fail(400, "Unsupported request data format")
        f = self._find_file(data)
        if f is None:
            raise _fail(404, "File not found")
        retire = bool(data["retire"])
        if retire != f.retired:
            f.retired = retire
            f.retired_by, f.retired_timestamp = (user, time.time()) if retire else (None, None)
        return _json(self._file_json(f))
