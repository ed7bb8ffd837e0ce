"""updateJwks (reference §2.2): keep CILogon's token-signing public keys in ``jwt_keys``.

Once a day: fetch the OpenID configuration, follow its ``jwks_uri``, store every usable key
by ``kid`` with the time it was last listed. Keys that disappear are kept, as upstream keeps
them, so a token signed just before a key rotation can still be checked.

Better than upstream on purpose (details in ``justin_flows.domain.jwks``): a malformed
document raises an error naming the URL, before any write, instead of returning quietly;
each skipped key is reported by ``kid``; a stored key is one that loads as an RSA key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from justin_flows.adapters.http import HTTPAdapter
from justin_flows.collector.report import CollectorReport
from justin_flows.db.engine import transaction, upsert
from justin_flows.db.models import JwtKey
from justin_flows.domain.jwks import jwks_uri_from_configuration, parse_jwks, require_https
from justin_flows.settings import get_settings

_MATERIAL = ("jwks_n", "jwks_e", "jwks_alg", "jwks_use", "jwks_kty")


def update_jwks(http: HTTPAdapter, *, configuration_url: str | None = None) -> CollectorReport:
    """Fetch the OpenID configuration and its key set; upsert each valid key by ``kid``.

    Two GETs whatever the number of keys (upstream: the same two). Raises
    ``JwksDocumentError`` (a ValueError) for an unusable document, ``ExternalCallError``
    when a fetch fails; in both cases ``jwt_keys`` is left as it was.
    """
    report = CollectorReport("updateJwks")
    url = require_https(
        configuration_url or get_settings().cilogon.openid_configuration_url, "OpenID configuration URL"
    )
    jwks_uri = jwks_uri_from_configuration(http.get_json(url), url)
    parsed = parse_jwks(http.get_json(jwks_uri), jwks_uri)
    if not parsed.keys and not parsed.problems:
        report.error(f"JWKS at {jwks_uri} lists no keys")

    now = dt.datetime.now(dt.timezone.utc)
    rows: list[dict[str, Any]] = [{**key.row(), "last_seen_time": now} for key in parsed.keys]
    with transaction() as session:
        stored = {
            r.jwks_kid: tuple(getattr(r, c) for c in _MATERIAL)
            for r in session.execute(
                select(JwtKey.jwks_kid, *(getattr(JwtKey, c) for c in _MATERIAL)).where(
                    JwtKey.jwks_kid.in_([key.kid for key in parsed.keys])
                )
            )
        }
        upsert(session, JwtKey.__table__, rows, ["jwks_kid"], [*_MATERIAL, "last_seen_time"])
    for key, row in zip(parsed.keys, rows):
        before = stored.get(key.kid)
        status = "new" if before is None else "unchanged" if before == tuple(row[c] for c in _MATERIAL) else "changed"
        report.count(status)
        report.rows.append({
            "kid": key.kid, "status": status,
            "detail": f"{key.kty} {key.bits} bits, alg {key.alg}, use {key.use}",
        })
    report.count("stored", len(rows))
    for problem in parsed.problems:
        report.error(problem.describe())
        report.count("skipped")
        report.rows.append({"kid": problem.kid or f"#{problem.index}", "status": "skipped", "detail": problem.reason})
    return report
