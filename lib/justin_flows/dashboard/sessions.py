"""Server-side sessions, kept in this process's memory, addressed by a random cookie value.

Why in memory: ``models.py`` has no sessions table for the dashboard to use (upstream's
``sessions`` table is not part of this schema), and a signed cookie would hold the session
itself in the browser, where logout cannot revoke it and the login's PKCE verifier and nonce
would travel to the client. In memory, logout and rotation really end a session. The cost:
a restart logs everyone out, and the dashboard must run as one process (``workers=1``).

A session id is 256 random bits (``secrets.token_urlsafe(32)``); it is rotated when a
login completes (the pre-login id is dropped), so an id planted before login is useless
after. Each session has its own CSRF token for state-changing forms. Anonymous sessions
are capped so a flood of ``/login`` requests cannot exhaust memory.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PENDING_LOGINS = 5  # per session: a few tabs may start a login at once


@dataclass(frozen=True)
class PendingLogin:
    """One authorization request in flight: what the callback must match and use."""

    state: str
    nonce: str
    verifier: str
    next_path: str
    created: float


@dataclass(frozen=True)
class User:
    subject: str
    eppn: str
    name: str
    groups: tuple[str, ...]
    logged_in_at: float

    @property
    def display_name(self) -> str:
        return self.name or self.eppn or self.subject


@dataclass
class Session:
    id: str
    csrf_token: str
    created: float
    expires: float
    user: User | None = None
    pending: dict[str, PendingLogin] = field(default_factory=dict)


class SessionStore:
    """Sessions by id; thread-safe; expired sessions are dropped when met or when space is needed."""

    def __init__(
        self,
        *,
        session_seconds: int,
        anonymous_seconds: int = 600,
        max_sessions: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session_seconds = session_seconds
        self.anonymous_seconds = anonymous_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _make_room(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= self.max_sessions:
            anonymous = next((sid for sid, s in self._sessions.items() if s.user is None), None)
            del self._sessions[anonymous if anonymous is not None else next(iter(self._sessions))]

    def create(self) -> Session:
        """A new anonymous session (short-lived until a login completes)."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now + self.anonymous_seconds)
        with self._lock:
            self._make_room(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires <= self._clock():
                del self._sessions[session_id]
                return None
            return session

    def add_pending(self, session: Session, login: PendingLogin) -> None:
        with self._lock:
            now = self._clock()
            session.pending = {
                s: p for s, p in session.pending.items() if p.created + self.anonymous_seconds > now
            }
            while len(session.pending) >= MAX_PENDING_LOGINS:
                session.pending.pop(next(iter(session.pending)))
            session.pending[login.state] = login
            session.expires = max(session.expires, now + self.anonymous_seconds)

    def take_pending(self, session: Session, state: str) -> PendingLogin | None:
        """The pending login for ``state`` (removed: a state is good for one callback only)."""
        with self._lock:
            login = session.pending.pop(state, None)
        if login is None or login.created + self.anonymous_seconds <= self._clock():
            return None
        return login

    def log_in(self, old: Session, user: User) -> Session:
        """A new session (new id, new CSRF token) for ``user``; ``old`` stops existing."""
        now = self._clock()
        new = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now + self.session_seconds, user)
        with self._lock:
            self._sessions.pop(old.id, None)
            self._make_room(now)
            self._sessions[new.id] = new
        return new

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
