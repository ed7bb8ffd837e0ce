"""Real X.509 credentials for tests: a grid CA, host ("user") certificates, VOMS proxies, and a
``voms-proxy-init`` stand-in that writes such proxies.

Everything is made with ``cryptography`` at test time: the proxies are RFC 3820 proxy
certificates (ProxyCertInfo extension, subject = issuer + ``CN=<number>``) signed by the
user certificate's key, followed by the proxy's RSA key and the user certificate, as
``voms-proxy-init`` writes them. The VOMS extension carries the requested FQAN inside a
small DER structure (not a signed attribute certificate: nothing here verifies one).

    ca = make_grid_ca()
    user = ca.issue_user("justin-jobs-production.dune.hep.ac.uk")
    cert, key = user.write(secrets_dir, "justin-jobs-production.dune.hep.ac.uk")
    pem = make_proxy(user, hours=168, fqans=["/dune/Role=Production/Capability=NULL"])

The stand-in (``install_voms_proxy_init_standin``) honours ``-cert -key -voms -valid -out``,
records each argv in ``calls.jsonl`` and is steered by ``behaviour.json``
(``set_behaviour``): ``{"mode": "ok" | "fail" | "garbage" | "empty" | "expired" | "short" |
"no-voms" | "no-file", "exit_code": int, "stdout": str, "sleep": float, "out_mode": int,
"times": int}``; ``times`` applies the knobs to the next N calls only. Each call's record
holds its ``argv``, ``mode`` and the permissions of the ``-out`` directory (``out_dir_mode``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = [
    "GridCA",
    "UserCredential",
    "install_voms_proxy_init_standin",
    "make_grid_ca",
    "make_proxy",
    "read_calls",
    "set_behaviour",
    "standin_main",
    "voms_fqan",
]

PROXY_CERT_INFO_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
VOMS_AC_OID = ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5")
CALLS_FILE = "calls.jsonl"
BEHAVIOUR_FILE = "behaviour.json"
UNREACHABLE_OUTPUT = (
    'Contacting  voms1.test.invalid:15042 [/DC=org/DC=test/CN=voms1.test.invalid] "dune" Failed\n\n'
    "None of the contacted servers for dune were capable\nof returning a valid AC for the user.\n"
)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


# ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll } }
_INHERIT_ALL = _der(0x06, bytes([0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01]))  # 1.3.6.1.5.5.7.21.1
PROXY_CERT_INFO_INHERIT_ALL = _der(0x30, _der(0x30, _INHERIT_ALL))


def voms_extension_value(vo: str, fqans: Sequence[str]) -> bytes:
    """A DER SEQUENCE naming the policy authority and the FQANs as OCTET STRINGs."""
    authority = _der(0x04, f"{vo}://voms1.test.invalid:15042".encode())
    values = _der(0x30, b"".join(_der(0x04, f.encode()) for f in fqans))
    return _der(0x30, _der(0x30, authority + values))


def voms_fqan(voms: str) -> str:
    """The FQAN a VOMS server grants for a ``-voms`` argument (``dune`` -> ``/dune/Role=NULL/...``)."""
    vo, _, fqan = voms.partition(":")
    group = fqan or f"/{vo}"
    if "/Role=" not in group:
        group += "/Role=NULL"
    return group + "/Capability=NULL"


def _rsa(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class UserCredential:
    """A host ("user") certificate and its key, as kept in ``/etc/justin-secrets``."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.certificate)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """``<stem>.cert.pem`` (0644) and ``<stem>.key.pem`` (0400) in ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_file, key_file = directory / f"{stem}.cert.pem", directory / f"{stem}.key.pem"
        cert_file.write_bytes(self.cert_pem)
        cert_file.chmod(0o644)
        key_file.write_bytes(self.key_pem)
        key_file.chmod(0o400)
        return cert_file, key_file


@dataclass(frozen=True)
class GridCA:
    """A throw-away grid certificate authority (RSA 2048) that issues host certificates."""

    name: x509.Name
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return _pem_cert(self.certificate)

    def issue_user(self, common_name: str, *, days: float = 30, not_before: dt.datetime | None = None) -> UserCredential:
        key = _rsa()
        start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        subject = x509.Name([
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "test"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Hosts"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
                    key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return UserCredential(cert, key)


def make_grid_ca(common_name: str = "justin-flows test grid CA") -> GridCA:
    key = _rsa()
    name = x509.Name([
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "test"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return GridCA(name, key, cert)


def make_proxy(
    user: UserCredential,
    *,
    hours: float = 168,
    fqans: Sequence[str] = (),
    vo: str = "dune",
    not_before: dt.datetime | None = None,
    rfc: bool = True,
    signer: rsa.RSAPrivateKey | None = None,
) -> bytes:
    """A proxy of ``user`` as ``voms-proxy-init`` writes it: proxy cert, proxy key, user cert.

    ``rfc=False`` makes a legacy Globus proxy (``CN=proxy``, no ProxyCertInfo); ``signer``
    signs with another key (a proxy that does not chain); no ``fqans``, no VOMS extension.
    """
    key = _rsa()
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    serial = x509.random_serial_number()
    cn = str(serial % 10**10) if rfc else "proxy"
    subject = x509.Name(list(user.certificate.subject.rdns) + [
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(user.certificate.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(hours=hours))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    if rfc:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, PROXY_CERT_INFO_INHERIT_ALL), critical=True
        )
    if fqans:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(VOMS_AC_OID, voms_extension_value(vo, fqans)), critical=False
        )
    proxy = builder.sign(signer or user.key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return _pem_cert(proxy) + key_pem + user.cert_pem


# -- the voms-proxy-init stand-in -----------------------------------------------------------

_SCRIPT = """#!{python}
# Generated by justin_flows.testing.x509; records calls under {state!r}.
import importlib.util, sys
_spec = importlib.util.spec_from_file_location("_justin_voms_standin", {module!r})
_mod = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _mod
_spec.loader.exec_module(_mod)
sys.exit(_mod.standin_main(sys.argv, {state!r}))
"""


def install_voms_proxy_init_standin(bin_dir: Path, state_dir: Path) -> Path:
    """Write an executable ``voms-proxy-init`` stand-in into ``bin_dir``; return its path."""
    bin_dir, state_dir = Path(bin_dir).resolve(), Path(state_dir).resolve()
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "voms-proxy-init"
    script.write_text(_SCRIPT.format(python=sys.executable, module=str(Path(__file__).resolve()), state=str(state_dir)))
    script.chmod(0o755)
    return script


def set_behaviour(state_dir: Path, behaviour: Mapping[str, Any] | None) -> None:
    path = Path(state_dir) / BEHAVIOUR_FILE
    if behaviour is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(dict(behaviour)))


def read_calls(state_dir: Path) -> list[dict[str, Any]]:
    path = Path(state_dir) / CALLS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _take_behaviour(state_dir: Path) -> dict[str, Any]:
    path = state_dir / BEHAVIOUR_FILE
    try:
        knobs = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    times = knobs.get("times")
    if isinstance(times, int):
        if times <= 1:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps(dict(knobs, times=times - 1)))
    return knobs


_VALUE_OPTIONS = ("-cert", "-key", "-voms", "-valid", "-out")


def _parse(argv: Sequence[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv):
        name = argv[i]
        if name not in _VALUE_OPTIONS or i + 1 >= len(argv):
            raise SystemExit(f"voms-proxy-init stand-in: unknown or incomplete option {name!r}")
        opts[name[1:]] = argv[i + 1]
        i += 2
    return opts


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _record(state: Path, record: Mapping[str, Any], *, update_last: bool = False) -> None:
    path = state / CALLS_FILE
    if update_last:
        lines = path.read_text().splitlines()
        lines[-1] = json.dumps({**json.loads(lines[-1]), **record})
        path.write_text("\n".join(lines) + "\n")
    else:
        with path.open("a") as calls:
            calls.write(json.dumps(dict(record)) + "\n")


def standin_main(argv: Sequence[str], state_dir: str) -> int:
    """What the stand-in does for one invocation; ``argv`` includes the program (recorded whole)."""
    state = Path(state_dir)
    knobs = _take_behaviour(state)
    mode = str(knobs.get("mode", "ok"))
    _record(state, {"argv": list(argv), "mode": mode})
    if knobs.get("sleep"):
        time.sleep(float(knobs["sleep"]))
    try:
        opts = _parse(argv[1:])
    except SystemExit as exc:
        print(exc)
        return 1
    if mode == "fail":
        print(knobs.get("stdout", UNREACHABLE_OUTPUT), end="")
        return int(knobs.get("exit_code", 1))
    try:
        cert = x509.load_pem_x509_certificate(Path(opts["cert"]).read_bytes())
        key = serialization.load_pem_private_key(Path(opts["key"]).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"sslutils.c:3140:error:processing key: {type(exc).__name__}")
        return 3
    if not isinstance(key, rsa.RSAPrivateKey):
        print("stand-in: only RSA keys")
        return 3
    user = UserCredential(cert, key)
    hours_text, _, minutes_text = opts.get("valid", "12:0").partition(":")
    hours = int(hours_text) + int(minutes_text or 0) / 60
    voms = opts.get("voms")
    fqans = [voms_fqan(voms)] if voms else []
    now = dt.datetime.now(dt.timezone.utc)
    out = Path(opts.get("out", f"/tmp/x509up_u{os.getuid()}"))
    if mode == "garbage":
        data = b"this is not a proxy\n"
    elif mode == "empty":
        data = b""
    elif mode == "expired":
        data = make_proxy(user, hours=1, fqans=fqans, not_before=now - dt.timedelta(hours=3))
    elif mode == "short":
        data = make_proxy(user, hours=2, fqans=fqans)
    elif mode == "no-voms":
        data = make_proxy(user, hours=hours)
    else:
        data = make_proxy(user, hours=hours, fqans=fqans)
    if mode != "no-file":
        _write_private(out, data)
        if "out_mode" in knobs:  # e.g. 0o644: a voms-proxy-init that ignores permissions
            os.chmod(out, int(knobs["out_mode"]))
    _record(state, {"out_dir_mode": oct(os.stat(out.parent).st_mode & 0o777)}, update_last=True)
    print(f"Your identity: {cert.subject.rfc4514_string()}")
    if voms:
        print(f'Contacting  voms1.test.invalid:15042 [/DC=org/DC=test/CN=voms1.test.invalid] "{voms.split(":")[0]}" Done')
    print("Creating proxy .... Done")
    print(f"\nYour proxy is valid until {now + dt.timedelta(hours=hours):%a %b %d %H:%M:%S %Y}")
    if "stdout" in knobs:
        print(knobs["stdout"], end="")
    return int(knobs.get("exit_code", 0))
