"""The MetaCat double: replayed against a real-server capture, and driven by the real client.

The contract test replays the capture of the real 4.1.4 server request by request and checks
that the double answers with the same status, content type and body (fids translated,
timestamps and tokens ignored). The other tests run the installed ``metacat-client`` (API and
CLI) and justIN's raw-urllib finder call against the double.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from metacat.webapi import AuthenticationError, MetaCatClient
from metacat.webapi.webapi import AlreadyExistsError, BadRequestError

from justin_flows.testing.metacat_double import REALM, SERVER_VERSION, MetaCatDouble, RecordedRequest
from tests.shared_data import REPO_ROOT, shared_path

CAPTURE = ("fixtures", "metacat-wire", "real-4.1.4.jsonl")
CAPTURE_CUT = 3000  # the capture keeps at most this many characters of a body
TIMESTAMP_KEYS = frozenset({"created_timestamp", "updated_timestamp", "retired_timestamp"})
DIGEST_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')
METACAT_CLI = Path(sys.executable).with_name("metacat")

# The client keeps tokens in the first .token_library of $HOME, cwd, /tmp; none of these may change.
_GUARDED_LIBRARIES = sorted(
    {
        Path(os.environ.get("HOME", "/nonexistent")) / ".token_library",
        Path.cwd() / ".token_library",
        REPO_ROOT / ".token_library",
        Path("/tmp/.token_library"),
    }
)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


@pytest.fixture(autouse=True)
def _no_stray_token_library() -> Iterator[None]:
    before = {p: _stat(p) for p in _GUARDED_LIBRARIES}
    yield
    after = {p: _stat(p) for p in _GUARDED_LIBRARIES}
    assert after == before, "a test wrote a .token_library outside its tmp dirs"


@pytest.fixture
def double() -> Iterator[MetaCatDouble]:
    with MetaCatDouble() as d:
        d.add_user("alice", "alicepw")
        yield d


@pytest.fixture
def client(double: MetaCatDouble, tmp_home: Path) -> MetaCatClient:
    """A real client with its own token library, logged in as alice."""
    c = MetaCatClient(double.server_url, auth_server_url=double.auth_url, token_library=str(tmp_home / ".token_library"))
    c.login_password("alice", "alicepw")
    return c


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------
# Contract: replay the real-server capture


def _decode(body: str, content_type: str | None) -> tuple[str, Any]:
    """(kind, value): 'json-seq' with its records, 'json' with the document, or 'text'."""
    media = (content_type or "").split(";")[0].strip()
    if media == "application/json-seq":
        return "json-seq", [json.loads(chunk) for chunk in body.split("\x1e") if chunk.strip()]
    if media in ("application/json", "text/json"):
        return "json", json.loads(body)
    return "text", body


def _file_identities(obj: Any) -> dict[tuple[str, str], str]:
    """(namespace, name) -> fid for every file object inside ``obj``."""
    found: dict[tuple[str, str], str] = {}
    if isinstance(obj, dict):
        if {"fid", "namespace", "name"} <= obj.keys():
            found[(obj["namespace"], obj["name"])] = obj["fid"]
        for value in obj.values():
            found.update(_file_identities(value))
    elif isinstance(obj, list):
        for value in obj:
            found.update(_file_identities(value))
    return found


def _normalise(obj: Any, fids: dict[str, str]) -> Any:
    """Masks timestamps and maps recorded fids onto the double's."""
    if isinstance(obj, dict):
        return {
            k: "<timestamp>" if k in TIMESTAMP_KEYS else fids.get(v, v) if k == "fid" else _normalise(v, fids)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_normalise(v, fids) for v in obj]
    return obj


def _canonical_multiset(records: list[Any]) -> list[str]:
    # the real server's row order is the database's; compare lists as multisets
    return sorted(json.dumps(r, sort_keys=True) for r in records)


class _Replayer:
    """Sends captured requests to a double, substituting live tokens, nonces and fids."""

    def __init__(self, double: MetaCatDouble, passwords: dict[str, str]) -> None:
        self.double = double
        self.passwords = passwords
        self.token: str | None = None
        self.nonce: str | None = None
        self.fids: dict[str, str] = {}  # recorded fid -> the double's fid
        # The capture redacts JWTs; its one failed token login used a token from another issuer.
        self.foreign_token = jwt.encode(
            {"sub": "admin", "exp": int(time.time()) + 3600, "iss": "elsewhere", "jti": "f0f0f0f0"},
            "some-other-secret-that-is-long-enough",
            algorithm="HS256",
        )

    def _translate(self, text: str) -> str:
        for recorded, ours in self.fids.items():
            text = text.replace(recorded, ours)
        return text

    def _digest_header(self, recorded: str, method: str) -> str:
        fields = {m[0]: m[1] or m[2] for m in DIGEST_FIELD.findall(recorded)}
        assert self.nonce, "a digest answer needs a prior challenge"
        username, uri, nc = fields["username"], fields["uri"], fields["nc"]
        cnonce = secrets.token_hex(8)
        ha1 = _md5(f"{username}:{REALM}:{self.passwords[username]}")
        response = _md5(f"{ha1}:{self.nonce}:{nc}:{cnonce}:auth:{_md5(f'{method}:{uri}')}")
        return (
            f'Digest username="{username}", realm="{REALM}", nonce="{self.nonce}", uri="{uri}", '
            f'response="{response}", algorithm="MD5", qop="auth", nc={nc}, cnonce="{cnonce}"'
        )

    def send(self, record: dict[str, Any]) -> requests.Response:
        req, expected_status = record["req"], record["resp"]["status"]
        path = self._translate(req["path"])
        base = self.double.server_url if path.startswith("/data/") else self.double.auth_url.removesuffix("/auth")
        headers = dict(req["headers"])
        if headers.get("X-Authentication-Token") == "<JWT>":
            assert self.token, "the capture sends a token before any login"
            headers["X-Authentication-Token"] = self.token
        auth = headers.get("Authorization", "")
        if auth.startswith("Digest "):
            headers["Authorization"] = self._digest_header(auth, req["method"])
        elif auth == "bearer <JWT>":
            headers["Authorization"] = "bearer " + (self.token if expected_status == 200 else self.foreign_token)
        body = self._translate(req["body"]).encode() if req["body"] else None
        response = requests.request(req["method"], base + path, headers=headers, data=body, timeout=10)
        if response.status_code == 200 and "X-Authentication-Token" in response.headers:
            self.token = response.headers["X-Authentication-Token"]
        challenge = re.search(r'nonce="([^"]+)"', response.headers.get("WWW-Authenticate", ""))
        if challenge:
            self.nonce = challenge.group(1)
        return response

    def differences(self, record: dict[str, Any], response: requests.Response) -> list[str]:
        expected = record["resp"]
        want_type = expected["headers"].get("Content-Type")
        got_type = response.headers.get("Content-Type")
        problems = []
        if response.status_code != expected["status"]:
            problems.append(f"status {response.status_code} != {expected['status']}: {response.text[:200]!r}")
        if got_type is None:
            problems.append("no Content-Type (the client needs one on every reply)")
        elif want_type is not None and got_type != want_type:
            problems.append(f"Content-Type {got_type!r} != {want_type!r}")
        for header in ("X-Authentication-Token", "WWW-Authenticate"):
            if (header in expected["headers"]) != (header in response.headers):
                problems.append(f"{header} presence differs")
        if "WWW-Authenticate" in expected["headers"] and "WWW-Authenticate" in response.headers:
            masked = re.sub(r'nonce="[^"]*"', 'nonce="<NONCE>"', response.headers["WWW-Authenticate"])
            if masked != expected["headers"]["WWW-Authenticate"]:
                problems.append(f"challenge {masked!r} != {expected['headers']['WWW-Authenticate']!r}")
        if problems:
            return problems

        want_kind, want = _decode(expected["body"], want_type)
        got_kind, got = _decode(response.text, got_type)
        if want_kind != got_kind or (want_kind == "json" and type(want) is not type(got)):
            return [f"body kind {got_kind}/{type(got).__name__} != {want_kind}/{type(want).__name__}"]
        if len(expected["body"]) >= CAPTURE_CUT:
            return []  # a cut body only fixes the kind
        if want_kind == "text":
            if expected["status"] == 400 and want.startswith("MQL"):
                # the real text carries a server traceback; the error class is the contract
                want, got = want.split(":", 1)[0], got.split(":", 1)[0]
            return [] if got == want else [f"body {got!r} != {want!r}"]

        ours = _file_identities(got)
        for key, fid in _file_identities(want).items():
            if key in ours:
                self.fids.setdefault(fid, ours[key])
        want, got = _normalise(want, self.fids), _normalise(got, {})
        if isinstance(want, list):
            want, got = _canonical_multiset(want), _canonical_multiset(got)
        return [] if got == want else [f"body differs:\n   got  {got}\n   want {want}"]


def test_replays_real_server_capture() -> None:
    records = [
        json.loads(line)
        for line in shared_path(*CAPTURE).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(records) == 75
    # Users and passwords come from the capture's own LDAP attempts (body "user:password").
    passwords = dict(
        r["req"]["body"].split(":", 1) for r in records if r["req"]["path"].endswith("method=ldap")
    )
    assert passwords, "the capture holds no password login"
    with MetaCatDouble() as double:
        for user, password in passwords.items():
            double.add_user(user, password)
        replayer = _Replayer(double, passwords)
        failures = []
        for index, record in enumerate(records):
            response = replayer.send(record)
            for problem in replayer.differences(record, response):
                failures.append(f"#{index} {record['req']['method']} {record['req']['path']}: {problem}")
        assert not failures, "\n".join(failures)
        assert len(double.requests) == len(records)
        # every capture request is routed on the last two path segments below the /app prefix
        assert all(r.path.startswith(("/app/data/", "/auth/")) for r in double.requests)


# ------------------------------------------------------------------------------------------
# The real Python client


def test_password_login_follows_ldap_then_digest(double: MetaCatDouble, tmp_home: Path) -> None:
    library = tmp_home / ".token_library"
    c = MetaCatClient(double.server_url, auth_server_url=double.auth_url, token_library=str(library))
    user, expiry = c.login_password("alice", "alicepw")
    assert user == "alice"
    assert time.time() + 6 * 86400 < expiry < time.time() + 8 * 86400
    assert [(r.method, r.path, r.status) for r in double.requests] == [
        ("POST", "/auth/auth", 401),
        ("GET", "/auth/auth", 401),
        ("GET", "/auth/auth", 200),
    ]
    url, token = library.read_text().split()
    assert url == double.server_url
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"
    assert c.auth_info()[0] == "alice"  # /auth/verify accepts the token

    double.clear_requests()
    with pytest.raises(AuthenticationError):
        c.login_password("alice", "wrong")
    assert [r.status for r in double.requests] == [401, 401, 401]  # no second challenge


def test_token_login_accepts_own_tokens_only(double: MetaCatDouble, tmp_home: Path) -> None:
    c = MetaCatClient(double.server_url, auth_server_url=double.auth_url, token_library=str(tmp_home / "lib"))
    user, _ = c.login_token("alice", double.mint_token("alice"))
    assert user == "alice"
    foreign = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, "x" * 32, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        c.login_token("alice", foreign)
    with pytest.raises(AuthenticationError):  # a valid token for another user
        c.login_token("bob", double.mint_token("alice"))


def test_client_namespace_dataset_declare_get_query(double: MetaCatDouble, client: MetaCatClient) -> None:
    ns = client.create_namespace("ns", description="test ns")
    assert ns["name"] == "ns" and ns["owner_user"] == "alice"

    created = client.create_dataset("ns:ds", metadata={"core.workflow": "w1"}, description="d")
    assert created["file_meta_requirements"] is None and created["file_count"] == 0
    with pytest.raises(AlreadyExistsError):
        client.create_dataset("ns:ds")
    assert client.get_dataset("ns:ds")["file_meta_requirements"] == {}
    assert client.get_dataset("ns:none") is None

    declared = client.declare_file(
        did="ns:f1.dat", dataset_did="ns:ds", size=123, checksums={"adler32": "0a1b2c3d"}, metadata={"core.run": 1}
    )
    assert declared["created_timestamp"] is None
    assert len(declared["fid"]) == 16 and declared["fid"].isalnum()
    client.declare_file(did="ns:f2.dat", dataset_did="ns:ds", size=7, metadata={"core.run": 2}, parents=[{"did": "ns:f1.dat"}])

    got = client.get_file(did="ns:f1.dat", with_datasets=True)
    assert got is not None
    assert (got["size"], got["checksums"], got["metadata"]) == (123, {"adler32": "0a1b2c3d"}, {"core.run": 1})
    assert got["children"] == [{"fid": client.get_file(did="ns:f2.dat")["fid"]}]
    assert got["datasets"] == [{"namespace": "ns", "name": "ds"}]
    assert client.get_file(did="ns:missing.dat") is None

    hits = list(client.query("files from ns:ds where core.run > 1", with_metadata=True))
    assert [(f["name"], f["metadata"]) for f in hits] == [("f2.dat", {"core.run": 2})]
    assert list(client.query("files from ns:ds", summary="count")) == [{"count": 2, "total_size": 130}]
    assert [f["name"] for f in client.get_dataset_files("ns:ds")] == ["f1.dat", "f2.dat"]

    with pytest.raises(AlreadyExistsError) as dup:
        client.declare_file(did="ns:f1.dat", dataset_did="ns:ds", size=1)
    assert dup.value.Message == "The following files already exist:\n  ns:f1.dat"
    with pytest.raises(BadRequestError):  # missing dataset is 400 on the real server
        client.declare_file(did="ns:f3.dat", dataset_did="ns:nods", size=1)


def test_client_add_files_and_update_file(double: MetaCatDouble, client: MetaCatClient) -> None:
    double.seed_file("dune", "out.root", 42, {"dune.output_status": "recorded"}, ["dune:all"])
    double.seed_dataset("usertest:w1s1p1")
    assert client.add_files("usertest:w1s1p1", file_list=[{"did": "dune:out.root"}]) == 1
    assert client.add_files("usertest:w1s1p1", file_list=[{"did": "dune:out.root"}]) == 0  # already a member
    assert double.dataset_members("usertest:w1s1p1") == ["dune:out.root"]

    reply = client.update_file(did="dune:out.root", metadata={"dune.output_status": "uploaded"})
    assert reply["metadata"] == {"dune.output_status": "uploaded"}
    assert reply["updated_by"] is None  # the real reply shows the row before the update
    record = double.get_file_record("dune:out.root")
    assert record is not None
    assert record["updated_by"] == "alice"
    assert record["metadata"] == {"dune.output_status": "uploaded"}
    assert {d["name"] for d in record["datasets"]} == {"all", "w1s1p1"}

    client.update_file(did="dune:out.root", metadata={"core.runs": [1]})
    assert double.get_file_record("dune:out.root")["metadata"] == {"dune.output_status": "uploaded", "core.runs": [1]}
    client.update_file(did="dune:out.root", metadata={"core.runs": [2]}, replace=True)
    assert double.get_file_record("dune:out.root")["metadata"] == {"core.runs": [2]}


def test_bad_and_unsupported_mql_are_400(double: MetaCatDouble, client: MetaCatClient) -> None:
    double.seed_file("ns", "a", 1, {}, ["ns:ds"])
    with pytest.raises(BadRequestError) as syntax:
        list(client.query("datasets ns:*"))
    assert str(syntax.value).startswith("MQLSyntaxError:")
    for unsupported in ("files from ns:ds - files from ns:ds", "parents(files from ns:ds)", "files ns:a"):
        with pytest.raises(BadRequestError) as compiled:
            list(client.query(unsupported))
        assert str(compiled.value).startswith("MQLCompilationError:")


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("GET", "create_namespace?name=x", None),
        ("POST", "create_dataset", {"namespace": "ns", "name": "x"}),
        ("POST", "declare_files?dataset=ns:ds", [{"namespace": "ns", "name": "x", "size": 1}]),
        ("POST", "add_files?dataset=ns:ds", {"namespace": None, "file_list": [{"did": "ns:a"}]}),
        ("POST", "update_file", {"namespace": "ns", "name": "a", "metadata": {"x.y": 1}}),
    ],
)
def test_state_changes_need_a_token(double: MetaCatDouble, method: str, route: str, body: Any) -> None:
    double.seed_file("ns", "a", 1, {}, ["ns:ds"])
    url = f"{double.server_url}/data/{route}"
    response = requests.request(method, url, data=None if body is None else json.dumps(body), timeout=10)
    assert (response.status_code, response.text) == (401, "Token not found")
    assert response.headers["Content-Type"].startswith("text/")
    bad = requests.request(method, url, headers={"X-Authentication-Token": "not-a-jwt"}, timeout=10)
    assert bad.status_code == 401
    assert double.dataset_members("ns:ds") == ["ns:a"]
    assert double.get_file_record("ns:a")["metadata"] == {}


def test_fail_next_gives_two_503s_then_success(double: MetaCatDouble, client: MetaCatClient) -> None:
    double.seed_dataset("ns:ds")
    client.InitialRetry = 0.01  # the client sleeps up to this (growing) between 503 retries
    double.fail_next("declare_files", 503, 2)
    double.clear_requests()
    declared = client.declare_file(did="ns:r.dat", dataset_did="ns:ds", size=5)
    assert declared["name"] == "r.dat"
    assert double.requests == [
        RecordedRequest("POST", "/app/data/declare_files", 503),
        RecordedRequest("POST", "/app/data/declare_files", 503),
        RecordedRequest("POST", "/app/data/declare_files", 200),
    ]
    assert double.dataset_members("ns:ds") == ["ns:r.dat"]
    with pytest.raises(ValueError):
        double.fail_next("declare_file", 503)  # a typo must not silently inject nothing


def test_fail_next_answers_plain_text_to_raw_callers(double: MetaCatDouble) -> None:
    double.seed_file("ns", "a", 1, {}, ["ns:ds"])
    double.fail_next("query", 500)
    url = f"{double.server_url}/data/query"
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(url, data=b"files from ns:ds", timeout=10)
    assert failed.value.code == 500
    assert failed.value.headers["Content-Type"].startswith("text/plain")
    with urllib.request.urlopen(url, data=b"files from ns:ds", timeout=10) as ok:
        assert ok.status == 200


def test_urllib_finder_query_without_token(double: MetaCatDouble) -> None:
    """justIN's finder: unauthenticated urllib POST, default form content type, JSON-seq lines."""
    double.seed_file("usertest", "a.root", 100, {"dune.output_status": "uploaded"}, ["usertest:w1"])
    double.seed_file("usertest", "b.root", 200, {"dune.output_status": "recorded"}, ["usertest:w1"])
    double.seed_file("usertest", "c.root", 300, {"dune.output_status": "uploaded"}, ["usertest:w1"])
    mql = "files from usertest:w1 where dune.output_status = 'uploaded'"
    url = f"{double.server_url}/data/query?with_meta=no&with_provenance=no"
    with urllib.request.urlopen(url, data=mql.encode(), timeout=10) as response:
        status, content_type, lines = response.status, response.headers["Content-Type"], response.readlines()
    assert (status, content_type) == (200, "application/json-seq")
    records = []
    for line in lines:
        text = line.decode()
        assert text.startswith("\x1e") and text.endswith("\n")
        records.append(json.loads(text[1:] if ord(text[0]) < 32 else text))
    assert [(r["namespace"], r["name"], r["size"]) for r in records] == [
        ("usertest", "a.root", 100),
        ("usertest", "c.root", 300),
    ]
    assert "metadata" not in records[0]
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(url, data=b"files from", timeout=10)
    assert bad.value.code == 400


def test_skip_limit_and_prefixed_server_url(tmp_home: Path) -> None:
    with MetaCatDouble(prefix="/dune_meta_prod/app") as d:
        for i in range(5):
            d.seed_file("ns", f"f{i}", i, {"core.run": i}, ["ns:ds"])
        assert d.server_url.endswith("/dune_meta_prod/app") and not d.server_url.endswith("/")
        c = MetaCatClient(d.server_url, auth_server_url=d.auth_url, token_library=str(tmp_home / "lib"))
        assert c.get_version() == SERVER_VERSION
        page = list(c.query("files from ns:ds where core.run >= 1 ordered skip 1 limit 2"))
        assert [f["name"] for f in page] == ["f2", "f3"]
        assert d.requests[-1].path == "/dune_meta_prod/app/data/query"
    with pytest.raises(RuntimeError):
        _ = d.server_url  # stopped


# ------------------------------------------------------------------------------------------
# The real CLI, as a subprocess


@dataclass
class _Cli:
    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        # a new session has no controlling terminal, so getpass reads the piped password
        return subprocess.run(
            [str(METACAT_CLI), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def cli(double: MetaCatDouble, tmp_path: Path) -> _Cli:
    if not METACAT_CLI.exists():
        pytest.skip(f"{METACAT_CLI} is not installed")
    home, cwd = tmp_path / "cli-home", tmp_path / "cli-cwd"
    home.mkdir()
    cwd.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("METACAT_", "BEARER_TOKEN", "X509_")) and k not in ("HOME", "XDG_RUNTIME_DIR")
    }
    env.update(HOME=str(home), METACAT_SERVER_URL=double.server_url, METACAT_AUTH_SERVER_URL=double.auth_url)
    return _Cli(env, cwd)


def test_cli_auth_login(double: MetaCatDouble, cli: _Cli) -> None:
    bad = cli("auth", "login", "alice", stdin="nope\n")
    assert bad.returncode == 45, bad.stderr
    good = cli("auth", "login", "alice", stdin="alicepw\n")
    assert good.returncode == 0, good.stderr
    assert re.search(r"^User:\s+alice$", good.stdout, re.M)
    library = Path(cli.env["HOME"]) / ".token_library"
    assert library.read_text().startswith(double.server_url + " ")
    assert not (cli.cwd / ".token_library").exists()
    whoami = cli("auth", "whoami")
    assert whoami.returncode == 0 and "alice" in whoami.stdout, whoami.stderr


def test_cli_dataset_declare_show_query(double: MetaCatDouble, cli: _Cli) -> None:
    # a token in the library stands in for a login (covered above) and saves a subprocess
    library = Path(cli.env["HOME"]) / ".token_library"
    library.write_text(f"{double.server_url} {double.mint_token('alice')}\n")
    library.chmod(0o600)

    assert cli("namespace", "create", "ns").returncode == 0
    created = cli("dataset", "create", "ns:ds")
    assert created.returncode == 0 and "Dataset ns:ds created" in created.stdout, created.stderr
    assert cli("dataset", "create", "ns:ds").returncode == 70  # AlreadyExistsError inside the command

    declare = ["file", "declare", "-s", "123", "-c", "adler32:0a1b2c3d", "-m", '{"core.run": 1}', "ns:f1.dat", "ns:ds"]
    first = cli(*declare)
    assert first.returncode == 0, first.stderr
    fid = double.get_file_record("ns:f1.dat")["fid"]
    assert first.stdout.split() == [fid, "ns", "f1.dat"]
    assert cli(*declare).returncode == 16  # duplicate

    shown = cli("file", "show", "-j", "-m", "ns:f1.dat")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["size"], data["checksums"], data["metadata"]) == (123, {"adler32": "0a1b2c3d"}, {"core.run": 1})
    missing = cli("file", "show", "ns:nope.dat")
    assert missing.returncode == 7 and "File not found" in missing.stderr

    double.seed_file("ns", "f2.dat", 5, {"core.run": 2}, ["ns:ds"])
    found = cli("query", "files from ns:ds where core.run = 1")
    assert (found.returncode, found.stdout.split()) == (0, ["ns:f1.dat"]), found.stderr
    assert cli("query", "files where").returncode == 18  # BadRequest
