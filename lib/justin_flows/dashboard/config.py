"""What the dashboard needs to know, in one checked object (built from settings or by a test)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from justin_flows.settings import Settings, get_settings

#: upstream's ``cilogonScopes`` (reference §0.2)
CILOGON_SCOPES = (
    "openid profile org.cilogon.userinfo wlcg.capabilityset:/duneana "
    "wlcg.groups:/dune wlcg.groups:/dune/production wlcg.groups:/dune/lowenergy"
)
#: upstream's redirect path (reference §7.1), so an existing CILogon client registration fits
CALLBACK_PATH = "/login/cilogon/login"


class DashboardConfigError(ValueError):
    """The dashboard cannot start with this configuration; the message says what to set."""


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardConfig:
    """Dashboard options.

    ``public_url`` is the address users' browsers see (the redirect URI is built from it,
    never from a request's Host header). It must be ``https://``; only
    ``insecure_loopback_http`` (for tests and a laptop) allows ``http://127.0.0.1``-style
    URLs, and then cookies lose their ``Secure`` flag.
    """

    public_url: str
    client_id: str
    client_secret: SecretStr
    openid_configuration_url: str
    required_group: str = "/dune"
    scope: str = CILOGON_SCOPES
    session_seconds: int = 24 * 3600  # upstream's web session: 24 h
    login_seconds: int = 600  # time allowed between /login and the provider's redirect back
    metadata_cache_seconds: float = 3600.0
    clock_leeway_seconds: int = 60
    insecure_loopback_http: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))
        url = urlsplit(self.public_url)
        if url.scheme == "http" and self.insecure_loopback_http:
            if not _is_loopback(url.hostname):
                raise DashboardConfigError(
                    f"insecure_loopback_http is only for http://127.0.0.1 or localhost, not {self.public_url!r}"
                )
        elif url.scheme != "https" or not url.hostname:
            raise DashboardConfigError(f"the dashboard's public URL {self.public_url!r} must be https://")
        if url.path or url.query or url.fragment:
            raise DashboardConfigError(f"the dashboard's public URL {self.public_url!r} must have no path")
        if not self.client_id:
            raise DashboardConfigError("the CILogon client id is not set (JUSTIN_CILOGON__CLIENT_ID)")
        if not self.client_secret.get_secret_value():
            raise DashboardConfigError("the CILogon client secret is not set (JUSTIN_CILOGON__CLIENT_SECRET)")
        if urlsplit(self.openid_configuration_url).scheme != "https":
            raise DashboardConfigError(
                f"the OpenID configuration URL {self.openid_configuration_url!r} must be https://"
            )
        if "openid" not in self.scope.split():
            raise DashboardConfigError("the scope must include openid")

    @property
    def redirect_uri(self) -> str:
        return self.public_url + CALLBACK_PATH

    @property
    def secure_cookies(self) -> bool:
        return not self.insecure_loopback_http

    @property
    def cookie_name(self) -> str:
        # the __Host- prefix makes browsers insist on Secure, Path=/ and no Domain
        return "__Host-justin_session" if self.secure_cookies else "justin_session"

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> DashboardConfig:
        """From ``dashboard_url`` and the ``cilogon`` group of the settings, plus ``overrides``."""
        settings = settings or get_settings()
        values: dict[str, Any] = {
            "public_url": settings.dashboard_url,
            "client_id": settings.cilogon.client_id or "",
            "client_secret": settings.cilogon.client_secret or SecretStr(""),
            "openid_configuration_url": settings.cilogon.openid_configuration_url,
        }
        dashboard = getattr(settings, "dashboard", None)  # a future settings group, if added
        if dashboard is not None:
            for name in ("session_seconds", "insecure_loopback_http"):
                if hasattr(dashboard, name):
                    values[name] = getattr(dashboard, name)
        values.update(overrides)
        if isinstance(values["client_secret"], str):
            values["client_secret"] = SecretStr(values["client_secret"])
        return cls(**values)
