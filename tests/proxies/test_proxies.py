"""createX509Proxies (reference §1) with a voms-proxy-init stand-in that writes real proxies.

The stand-in honours -cert/-key/-voms/-valid/-out, records its argv, and can be told to
fail, hang, or write garbage, an expired, a short-lived or an attribute-less proxy.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from justin_flows.adapters.commands import CommandFailed
from justin_flows.adapters.voms import is_transient
from justin_flows.domain.x509_proxy import inspect_proxy
from justin_flows.ledger import Ledger
from justin_flows.proxies import create_proxies, default_proxy_path
from justin_flows.testing.x509 import make_proxy, read_calls, set_behaviour, voms_fqan
from tests.proxies.conftest import NO_ROLES, PRODUCTION, VomsEnv

PERMANENT_REFUSAL = (
    'Contacting  voms1.test.invalid:15042 [/DC=org/DC=test/CN=voms1.test.invalid] "dune" Failed\n\n'
    "Error: dune: User unknown to this VO.\n\n"
    "None of the contacted servers for dune were capable\nof returning a valid AC for the user.\n"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def argv_calls(env: VomsEnv) -> list[list[str]]:
    return [c["argv"] for c in read_calls(env.state_dir)]


def attempts(ledger: Ledger) -> list[tuple[str, int, str]]:
    return [(r.operation, r.attempt, r.outcome) for r in ledger.snapshot()]


def place_old_proxies(env: VomsEnv) -> dict[Path, bytes]:
    """Valid (100 h) proxies from an earlier day, 0600, to be kept on failure."""
    old = {
        env.production_proxy: make_proxy(env.users[PRODUCTION], hours=100, fqans=[voms_fqan("dune:/dune/Role=Production")]),
        env.no_roles_proxy: make_proxy(env.users[NO_ROLES], hours=100, fqans=[voms_fqan("dune")]),
    }
    for path, data in old.items():
        path.write_bytes(data)
        path.chmod(0o600)
    return old


def test_both_proxies_renewed_0600_parse_as_voms_proxies_and_argv_is_exact(voms_env: VomsEnv) -> None:
    ledger = Ledger()
    report = create_proxies(voms_env.adapter(ledger))

    assert report.errors == []
    assert dict(report.counts) == {"renewed": 2}
    calls = argv_calls(voms_env)
    assert len(calls) == 2
    for call, stem, voms, target in (
        (calls[0], PRODUCTION, "dune:/dune/Role=Production", voms_env.production_proxy),
        (calls[1], NO_ROLES, "dune", voms_env.no_roles_proxy),
    ):
        out = Path(call[-1])
        assert call == [
            str(voms_env.standin),
            "-cert", str(voms_env.secrets_dir / f"{stem}.cert.pem"),
            "-key", str(voms_env.secrets_dir / f"{stem}.key.pem"),
            "-voms", voms,
            "-valid", "168:0",
            "-out", str(out),
        ]
        # the temporary output is inside a fresh private directory beside the target
        assert out.parent.parent == target.parent and out.parent.name.startswith(f".{target.name}.")
    assert [c["out_dir_mode"] for c in read_calls(voms_env.state_dir)] == ["0o700", "0o700"]

    production = inspect_proxy(voms_env.production_proxy.read_bytes(), voms_group="/dune/Role=Production")
    no_roles = inspect_proxy(voms_env.no_roles_proxy.read_bytes(), voms_group="/dune")
    assert production.issuer == voms_env.users[PRODUCTION].certificate.subject.rfc4514_string()
    assert no_roles.issuer == voms_env.users[NO_ROLES].certificate.subject.rfc4514_string()
    assert production.kind == no_roles.kind == "RFC 3820"
    assert 167 < production.hours_left(dt.datetime.now(dt.timezone.utc)) <= 168
    # the production proxy (only) is copied to the clients' default path, also 0600
    assert voms_env.default_proxy.read_bytes() == voms_env.production_proxy.read_bytes()
    assert {p.name: mode(p) for p in voms_env.out_dir.iterdir()} == {
        voms_env.production_proxy.name: 0o600, voms_env.no_roles_proxy.name: 0o600, voms_env.default_proxy.name: 0o600,
    }  # and no temporary directory or file is left behind
    assert [(r["proxy"], r["file"], r["status"]) for r in report.rows] == [
        ("production", str(voms_env.production_proxy), "renewed"),
        ("no-roles", str(voms_env.no_roles_proxy), "renewed"),
    ]
    assert f"copied to {voms_env.default_proxy}" in report.rows[0]["detail"]
    assert "copied" not in report.rows[1]["detail"]
    assert attempts(ledger) == [("voms-proxy-init", 1, "ok")] * 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to verify the chain independently")
def test_openssl_verifies_the_renewed_proxy_as_a_proxy_of_the_host_certificate(voms_env: VomsEnv, tmp_path: Path) -> None:
    create_proxies(voms_env.adapter(), kinds=["production"])
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(voms_env.ca.cert_pem)
    result = subprocess.run(
        ["openssl", "verify", "-allow_proxy_certs", "-CAfile", str(ca_file),
         "-untrusted", str(voms_env.production_proxy), str(voms_env.production_proxy)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_refused_identity_is_not_retried_and_the_previous_proxies_are_kept(voms_env: VomsEnv) -> None:
    old = place_old_proxies(voms_env)
    set_behaviour(voms_env.state_dir, {"mode": "fail", "stdout": PERMANENT_REFUSAL, "exit_code": 1})
    ledger = Ledger()
    report = create_proxies(voms_env.adapter(ledger))

    assert dict(report.counts) == {"failed": 2}
    assert len(argv_calls(voms_env)) == 2  # one attempt each: a refusal does not go away
    assert attempts(ledger) == [("voms-proxy-init", 1, "error")] * 2
    for path, data in old.items():
        assert path.read_bytes() == data and mode(path) == 0o600
    assert not voms_env.default_proxy.exists()
    assert len(report.errors) == 2
    assert report.errors[0].startswith(
        "production proxy (dune:/dune/Role=Production) not renewed: voms.voms-proxy-init failed after 1 attempt(s): "
        "CommandFailed: "
    )
    assert "User unknown to this VO" in report.errors[0]
    assert f"previous proxy at {voms_env.production_proxy} kept, valid until " in report.errors[0]
    assert "h left)" in report.errors[0]
    assert [r["status"] for r in report.rows] == ["failed", "failed"]


def test_unreachable_voms_servers_are_tried_three_times_then_the_old_proxy_is_kept(voms_env: VomsEnv) -> None:
    old = place_old_proxies(voms_env)
    set_behaviour(voms_env.state_dir, {"mode": "fail"})  # "None of the contacted servers..." every time
    ledger = Ledger()
    report = create_proxies(voms_env.adapter(ledger), kinds=["production"])

    assert len(argv_calls(voms_env)) == 3
    assert attempts(ledger) == [("voms-proxy-init", 1, "error"), ("voms-proxy-init", 2, "error"),
                                ("voms-proxy-init", 3, "error")]
    assert voms_env.production_proxy.read_bytes() == old[voms_env.production_proxy]
    assert "failed after 3 attempt(s)" in report.errors[0]


def test_a_transient_failure_then_success_renews_the_proxy(voms_env: VomsEnv) -> None:
    place_old_proxies(voms_env)
    set_behaviour(voms_env.state_dir, {"mode": "fail", "times": 1})
    ledger = Ledger()
    report = create_proxies(voms_env.adapter(ledger), kinds=["production"])

    assert report.errors == [] and dict(report.counts) == {"renewed": 1}
    assert attempts(ledger) == [("voms-proxy-init", 1, "error"), ("voms-proxy-init", 2, "ok")]
    assert inspect_proxy(voms_env.production_proxy.read_bytes()).hours_left(dt.datetime.now(dt.timezone.utc)) > 167


def test_a_hanging_voms_proxy_init_times_out_and_is_retried(voms_env: VomsEnv) -> None:
    place_old_proxies(voms_env)
    set_behaviour(voms_env.state_dir, {"sleep": 5})
    ledger = Ledger()
    report = create_proxies(voms_env.adapter(ledger, timeout_seconds=0.5), kinds=["no-roles"])

    assert [a for _, a, outcome in attempts(ledger) if outcome == "error"] == [1, 2, 3]
    assert "TimeoutExpired" in report.errors[0]
    assert dict(report.counts) == {"failed": 1}


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("garbage", "voms-proxy-init wrote an unusable proxy: the file holds no readable PEM certificate"),
        ("empty", "voms-proxy-init wrote an unusable proxy: the file is empty"),
        ("expired", "voms-proxy-init wrote an unusable proxy: the proxy chain expired at "),
        ("short", "less than the required 24 h"),
        ("no-voms", "the proxy carries no VOMS attributes (expected /dune/Role=Production)"),
        ("no-file", "voms-proxy-init exited 0 but wrote no file"),
    ],
)
def test_an_unusable_proxy_from_exit_0_keeps_the_old_file(voms_env: VomsEnv, behaviour: str, reason: str) -> None:
    old = place_old_proxies(voms_env)
    set_behaviour(voms_env.state_dir, {"mode": behaviour})
    ledger = Ledger()
    report = create_proxies(voms_env.adapter(ledger), kinds=["production"])

    assert voms_env.production_proxy.read_bytes() == old[voms_env.production_proxy]
    assert mode(voms_env.production_proxy) == 0o600
    assert not voms_env.default_proxy.exists()
    assert len(report.errors) == 1 and reason in report.errors[0]
    assert attempts(ledger) == [("voms-proxy-init", 1, "ok")]  # the command worked; its output did not
    assert sorted(p.name for p in voms_env.out_dir.iterdir()) == sorted(
        [voms_env.production_proxy.name, voms_env.no_roles_proxy.name]
    )  # the rejected file went with its private directory


def test_first_renewal_with_no_previous_proxy_says_so_on_failure(voms_env: VomsEnv) -> None:
    set_behaviour(voms_env.state_dir, {"mode": "garbage"})
    report = create_proxies(voms_env.adapter(), kinds=["no-roles"])
    assert not voms_env.no_roles_proxy.exists()
    assert report.errors[0].endswith(f"; no previous proxy at {voms_env.no_roles_proxy}")


def test_one_kind_failing_does_not_stop_the_other(voms_env: VomsEnv) -> None:
    old = place_old_proxies(voms_env)
    set_behaviour(voms_env.state_dir, {"mode": "fail", "stdout": PERMANENT_REFUSAL, "times": 1})
    report = create_proxies(voms_env.adapter())

    assert dict(report.counts) == {"failed": 1, "renewed": 1}
    assert voms_env.production_proxy.read_bytes() == old[voms_env.production_proxy]
    assert voms_env.no_roles_proxy.read_bytes() != old[voms_env.no_roles_proxy]
    inspect_proxy(voms_env.no_roles_proxy.read_bytes(), voms_group="/dune")
    assert [r["status"] for r in report.rows] == ["failed", "renewed"]


def test_missing_host_key_is_reported_without_running_voms_proxy_init(voms_env: VomsEnv) -> None:
    key = voms_env.secrets_dir / f"{PRODUCTION}.key.pem"
    key.chmod(0o600)
    key.unlink()
    report = create_proxies(voms_env.adapter(), kinds=["production"])
    assert argv_calls(voms_env) == []
    assert report.errors == [
        f"production proxy (dune:/dune/Role=Production) not renewed: host key {key} not found; "
        f"no previous proxy at {voms_env.production_proxy}"
    ]


def test_proxy_is_0600_even_when_voms_proxy_init_writes_it_world_readable(voms_env: VomsEnv) -> None:
    """The output directory is 0700, so a 0644 file written there is never reachable by others."""
    set_behaviour(voms_env.state_dir, {"out_mode": 0o644})
    old_umask = os.umask(0)
    try:
        create_proxies(voms_env.adapter(), kinds=["production"])
    finally:
        os.umask(old_umask)
    assert read_calls(voms_env.state_dir)[0]["out_dir_mode"] == "0o700"
    assert mode(voms_env.production_proxy) == 0o600
    assert mode(voms_env.default_proxy) == 0o600


def test_a_symlink_at_the_target_is_replaced_not_followed(voms_env: VomsEnv, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    voms_env.production_proxy.symlink_to(victim)
    voms_env.default_proxy.symlink_to(victim)
    report = create_proxies(voms_env.adapter(), kinds=["production"])
    assert report.errors == []
    assert victim.read_text() == "keep me"
    for path in (voms_env.production_proxy, voms_env.default_proxy):
        assert not path.is_symlink() and mode(path) == 0o600
        inspect_proxy(path.read_bytes())


def test_default_copy_is_skipped_when_it_is_the_production_proxy_itself(
    voms_env: VomsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("X509_USER_PROXY", str(voms_env.production_proxy))
    report = create_proxies(voms_env.adapter(), kinds=["production"])
    assert report.errors == [] and "copied" not in report.rows[0]["detail"]
    inspect_proxy(voms_env.production_proxy.read_bytes())


def test_explicit_default_proxy_path_wins(voms_env: VomsEnv, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "x509up_u1"
    elsewhere.parent.mkdir()
    create_proxies(voms_env.adapter(), kinds=["production"], default_proxy=elsewhere)
    assert elsewhere.read_bytes() == voms_env.production_proxy.read_bytes()
    assert not voms_env.default_proxy.exists()


def test_default_proxy_path_falls_back_to_tmp_x509up_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X509_USER_PROXY", raising=False)
    assert default_proxy_path() == Path(f"/tmp/x509up_u{os.getuid()}")


def test_unknown_kind_is_refused_before_any_call(voms_env: VomsEnv) -> None:
    with pytest.raises(ValueError, match=r"unknown proxy kind\(s\) \['admin'\]"):
        create_proxies(voms_env.adapter(), kinds=["production", "admin"])
    assert argv_calls(voms_env) == []


@pytest.mark.parametrize(
    ("returncode", "output", "transient"),
    [
        (1, "None of the contacted servers for dune were capable\nof returning a valid AC for the user.", True),
        (1, "Contacting voms1 ... Failed\nError: Connection refused\n", True),
        (1, "Temporary failure in name resolution", True),
        (1, PERMANENT_REFUSAL, False),
        (1, "Error: dune: Unable to satisfy B /dune/Role=Production Request!\nNone of the contacted servers", False),
        (1, "VOMS Server for dune not known!", False),
        (1, "ERROR: Your certificate expired Mon Jan  1 00:00:00 2026", False),
        (3, "sslutils.c:3140:error:400003F5:lib(128)::processing key", False),
        (2, "None of the contacted servers", False),
    ],
)
def test_which_voms_proxy_init_failures_are_transient(returncode: int, output: str, transient: bool) -> None:
    assert is_transient(CommandFailed(["voms-proxy-init"], returncode, output)) is transient


def test_timeouts_are_transient_and_a_missing_program_is_not() -> None:
    assert is_transient(subprocess.TimeoutExpired(["voms-proxy-init"], 1))
    assert not is_transient(FileNotFoundError("voms-proxy-init"))


def test_required_remaining_validity_is_an_option(voms_env: VomsEnv) -> None:
    set_behaviour(voms_env.state_dir, {"mode": "short"})  # a 2 h proxy
    report = create_proxies(voms_env.adapter(), kinds=["production"], min_valid_hours=1)
    assert report.errors == [] and dict(report.counts) == {"renewed": 1}
