"""The dashboard: a small Starlette application (served by uvicorn) with CILogon login.

Routes (all pages read-only, plain server-rendered HTML, no JavaScript):

* ``GET /login?next=/path``: start a login: a new pending login (state, nonce, PKCE
  verifier) in this browser's session, then a redirect to CILogon's authorization endpoint.
* ``GET /login/cilogon/login``: CILogon's redirect back (upstream's path). The ``state``
  must be one this browser's session started, unused and under ``login_seconds`` old; the
  code is exchanged, the tokens verified (``oidc.verify_login``); the session id is then
  replaced by a new one and the browser sent to ``next`` (a local path only).
* ``POST /logout`` with the session's CSRF token: the session is deleted.
* ``GET /``, ``/rucio-health``, ``/storages``, ``/sites``, ``/jobs``, ``/external-calls``:
  the pages; without a logged-in session they redirect to ``/login?next=<the page>``.
* ``GET /healthz``: ``ok`` (no login), for a load balancer.

Every response carries a strict Content-Security-Policy (no scripts at all), ``nosniff``,
``Referrer-Policy: same-origin`` (no other site ever sees a dashboard URL) and ``no-store``.
The session cookie is ``HttpOnly``, ``SameSite=Lax``, ``Secure`` and ``__Host-`` prefixed
(both dropped only with ``insecure_loopback_http``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from justin_flows.adapters.http import HTTPAdapter
from justin_flows.dashboard import queries
from justin_flows.dashboard.config import CALLBACK_PATH, DashboardConfig
from justin_flows.dashboard.oidc import (
    KeyLookup,
    LoginRefused,
    MetadataCache,
    ProviderUnavailable,
    authorization_url,
    exchange_code,
    new_pkce,
    stored_key,
    verify_login,
)
from justin_flows.dashboard.sessions import PendingLogin, Session, SessionStore, User
from justin_flows.dashboard.templates import render
from justin_flows.db.engine import get_engine
from justin_flows.ledger import LEDGER, RunInfo
from justin_flows.secrets import register_secret
from justin_flows.settings import get_settings

log = logging.getLogger("justin_flows.dashboard")

MAX_FORM_BYTES = 4096
MAX_NEXT_CHARS = 2000


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/`` (no open redirect after login).

    Refused: absolute URLs, scheme-relative ``//host``, ``/\\host`` (browsers read ``\\``
    as ``/``), control characters, over-long values, and the login/logout routes.
    """
    if not value or len(value) > MAX_NEXT_CHARS:
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    if parts.path in ("/login", "/logout", CALLBACK_PATH):
        return "/"
    return value


class SecurityHeaders:
    """Adds the security headers to every HTTP response (pure ASGI, so streaming is untouched)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on
            # form POSTs, which the logout's Origin check must be able to tell from an attack
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        }
        if hsts:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


class Dashboard:
    """The application's state and handlers (one per process)."""

    def __init__(
        self,
        config: DashboardConfig,
        http: HTTPAdapter,
        store: SessionStore | None = None,
        keys: KeyLookup = stored_key,
    ) -> None:
        self.config = config
        self.http = http
        self.store = store or SessionStore(session_seconds=config.session_seconds, anonymous_seconds=config.login_seconds)
        self.keys = keys
        self.metadata = MetadataCache(http, config.openid_configuration_url, config.metadata_cache_seconds)
        self.instance = get_settings().instance

    # -- helpers -----------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        return self.store.get(request.cookies.get(self.config.cookie_name))

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(
            self.config.cookie_name, session.id, max_age=max(1, int(session.expires - time.time())), path="/",
            secure=self.config.secure_cookies, httponly=True, samesite="lax",
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.config.cookie_name, path="/", secure=self.config.secure_cookies, httponly=True, samesite="lax"
        )

    def message(self, status: int, title: str, message: str, *, bad: bool = True, link: str = "/login",
                link_text: str = "Log in") -> HTMLResponse:
        html = render("message.html", title=title, message=message, bad=bad, link=link, link_text=link_text,
                      user=None, csrf_token="", instance=self.instance)
        return HTMLResponse(html, status_code=status)

    def flush_ledger(self) -> None:
        """Write the login's external calls (config GET, token POST) to the ledger table."""
        try:
            LEDGER.flush(get_engine(), RunInfo(flow_name="dashboard"))
        except Exception as exc:  # the login's outcome matters more than its bookkeeping
            log.warning("could not write the external-call ledger: %s", type(exc).__name__)

    # -- login -------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        try:
            metadata = await run_in_threadpool(self.metadata.get)
        except ProviderUnavailable as exc:
            log.warning("login unavailable: %s", exc)
            await run_in_threadpool(self.flush_ledger)
            return self.message(503, "Login unavailable",
                                "CILogon's configuration could not be read; please try again in a few minutes.",
                                link="/login", link_text="Try again")
        session = self.session(request) or self.store.create()
        verifier, challenge = new_pkce()
        pending = PendingLogin(
            state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32), verifier=verifier,
            next_path=safe_next(request.query_params.get("next")), created=time.time(),
        )
        self.store.add_pending(session, pending)
        url = authorization_url(metadata, self.config, state=pending.state, nonce=pending.nonce, challenge=challenge)
        response = RedirectResponse(url, status_code=302)
        self.set_cookie(response, session)
        return response

    async def callback(self, request: Request) -> Response:
        session = self.session(request)
        state = request.query_params.get("state", "")
        if session is None:
            return self.message(400, "Login failed",
                                "This browser has no login in progress (cookies must be enabled, and a login must "
                                f"finish within {self.config.login_seconds // 60} minutes).")
        pending = self.store.take_pending(session, state) if state else None
        if pending is None:
            log.warning("login callback refused: state does not match a login started by this session")
            return self.message(400, "Login failed",
                                "This login was not started by this browser, or was already used. Please log in again.")
        error = request.query_params.get("error")
        if error:
            return self.message(403, "Login failed", f"CILogon did not log you in ({error[:100]}).")
        code = request.query_params.get("code", "")
        if not code or len(code) > 2048:
            return self.message(400, "Login failed", "CILogon's answer had no authorization code.")
        try:
            metadata = await run_in_threadpool(self.metadata.get)
            tokens = await run_in_threadpool(
                exchange_code, self.http, metadata, self.config, code=code, verifier=pending.verifier
            )
            verified = await run_in_threadpool(
                lambda: verify_login(
                    tokens, keys=self.keys, issuer=metadata.issuer, client_id=self.config.client_id,
                    nonce=pending.nonce, required_group=self.config.required_group,
                    leeway=self.config.clock_leeway_seconds,
                )
            )
        except ProviderUnavailable as exc:
            log.warning("login unavailable: %s", exc)
            return self.message(503, "Login unavailable", "CILogon's configuration could not be read; please try again.")
        except LoginRefused as exc:
            log.warning("login refused: %s", exc.detail)
            return self.message(403, "Login refused", exc.reason)
        finally:
            await run_in_threadpool(self.flush_ledger)
        user = User(verified.subject, verified.eppn, verified.name, verified.groups, time.time())
        new = self.store.log_in(session, user)
        log.info("login: %s (%s), groups %s", user.subject, user.eppn, ",".join(user.groups))
        response = RedirectResponse(safe_next(pending.next_path), status_code=303)
        self.set_cookie(response, new)
        return response

    async def logout(self, request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large", status_code=413)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large", status_code=413)
        session = self.session(request)
        origin = request.headers.get("origin")
        if origin is not None and origin != self.config.public_url:
            return self.message(403, "Logout refused", "This logout did not come from the dashboard's own page.",
                                link="/", link_text="Back to the dashboard")
        if session is not None:
            token = parse_qs(body.decode("utf-8", errors="replace")).get("csrf_token", [""])[0]
            if not secrets.compare_digest(token.encode(), session.csrf_token.encode()):
                return self.message(403, "Logout refused", "The logout form has expired; reload the page and try again.",
                                    link="/", link_text="Back to the dashboard")
            self.store.delete(session.id)
            if session.user is not None:
                log.info("logout: %s", session.user.subject)
        response = RedirectResponse("/logged-out", status_code=303)
        self.clear_cookie(response)
        return response

    async def logged_out(self, request: Request) -> Response:
        return self.message(200, "Logged out", "You have logged out.", bad=False, link="/login", link_text="Log in again")

    # -- pages -------------------------------------------------------------------------------

    async def _show(self, request: Request, template: str, title: str, load: Callable[[], dict[str, Any]]) -> Response:
        """The page, its data read in a worker thread; a redirect to login when not logged in."""
        session = self.session(request)
        if session is None or session.user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=302)
        context = await run_in_threadpool(load)
        html = render(template, title=title, user=session.user, csrf_token=session.csrf_token,
                      instance=self.instance, **context)
        return HTMLResponse(html)

    async def overview(self, request: Request) -> Response:
        return await self._show(request, "overview.html", "Overview", lambda: {"counts": queries.overview()})

    async def rucio_health(self, request: Request) -> Response:
        hours = queries.clamp_hours(_int_param(request, "hours", 48))
        return await self._show(request, "rucio_health.html", "Rucio health",
                                lambda: {"page": queries.rucio_health_history(hours), "hours": hours})

    async def storages(self, request: Request) -> Response:
        return await self._show(request, "storages.html", "Storages", lambda: {"rows": queries.storages()})

    async def sites(self, request: Request) -> Response:
        return await self._show(request, "sites.html", "Sites and entries",
                                lambda: {"sites": queries.sites(), "entries": queries.entries()})

    async def jobs(self, request: Request) -> Response:
        return await self._show(request, "jobs.html", "Recent jobs",
                                lambda: {"rows": queries.recent_jobs(queries.RECENT_JOBS), "limit": queries.RECENT_JOBS})

    async def external_calls(self, request: Request) -> Response:
        hours = queries.clamp_hours(_int_param(request, "hours", 24))
        return await self._show(request, "external_calls.html", "External calls per hour",
                                lambda: {"data": queries.calls_per_hour(hours), "hours": hours})

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")


def create_app(
    config: DashboardConfig | None = None,
    *,
    http: HTTPAdapter | None = None,
    store: SessionStore | None = None,
    keys: KeyLookup = stored_key,
) -> Starlette:
    """The ASGI application. ``config`` defaults to ``DashboardConfig.from_settings()``;
    ``http`` to an ``HTTPAdapter`` on the settings (``cilogon.ca_file``, timeouts)."""
    config = config or DashboardConfig.from_settings()
    register_secret(config.client_secret.get_secret_value())
    owns_http = http is None
    adapter = http or HTTPAdapter()
    dashboard = Dashboard(config, adapter, store, keys)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owns_http:
            adapter.close()

    app = Starlette(
        routes=[
            Route("/", dashboard.overview),
            Route("/rucio-health", dashboard.rucio_health),
            Route("/storages", dashboard.storages),
            Route("/sites", dashboard.sites),
            Route("/jobs", dashboard.jobs),
            Route("/external-calls", dashboard.external_calls),
            Route("/login", dashboard.login),
            Route(CALLBACK_PATH, dashboard.callback),
            Route("/logout", dashboard.logout, methods=["POST"]),
            Route("/logged-out", dashboard.logged_out),
            Route("/healthz", dashboard.healthz),
        ],
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    app.add_middleware(SecurityHeaders, hsts=config.secure_cookies)
    return app


def serve(host: str = "127.0.0.1", port: int = 8080, *, config: DashboardConfig | None = None,
          log_level: str = "info") -> None:
    """Serve the dashboard with uvicorn (one process: sessions live in its memory).

    TLS is expected in front (a reverse proxy on ``dashboard_url``); the dashboard itself
    listens on plain HTTP, by default on 127.0.0.1 only.
    """
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level, server_header=False,
                proxy_headers=False, access_log=True)
