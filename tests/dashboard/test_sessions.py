"""The in-memory session store: rotation, expiry, one-use states, bounded memory."""

from __future__ import annotations

from justin_flows.dashboard.sessions import MAX_PENDING_LOGINS, PendingLogin, SessionStore, User


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pending(state: str, created: float) -> PendingLogin:
    return PendingLogin(state, "nonce-" + state, "verifier-" + state, "/", created)


USER = User("sub-1", "alice@fnal.gov", "Alice", ("/dune",), 0.0)


def test_login_rotates_the_id_and_csrf_token_and_drops_the_old_session() -> None:
    clock = Clock()
    store = SessionStore(session_seconds=86400, anonymous_seconds=600, clock=clock)
    anonymous = store.create()
    new = store.log_in(anonymous, USER)
    assert new.id != anonymous.id and new.csrf_token != anonymous.csrf_token
    assert store.get(anonymous.id) is None and store.get(new.id) is new
    assert len(new.id) >= 43  # 256 random bits
    clock.now += 86400 - 1
    assert store.get(new.id) is new
    clock.now += 1
    assert store.get(new.id) is None  # 24 h, as upstream's web sessions


def test_anonymous_sessions_and_pending_logins_expire_after_the_login_window() -> None:
    clock = Clock()
    store = SessionStore(session_seconds=86400, anonymous_seconds=600, clock=clock)
    session = store.create()
    store.add_pending(session, pending("a", clock.now))
    clock.now += 599
    assert store.take_pending(session, "a") is not None
    assert store.take_pending(session, "a") is None  # one use
    store.add_pending(session, pending("b", clock.now))
    clock.now += 600
    assert store.take_pending(session, "b") is None
    clock.now += 600
    assert store.get(session.id) is None


def test_a_few_logins_in_flight_per_session_the_oldest_dropped() -> None:
    clock = Clock()
    store = SessionStore(session_seconds=86400, clock=clock)
    session = store.create()
    for i in range(MAX_PENDING_LOGINS + 2):
        store.add_pending(session, pending(str(i), clock.now))
    assert sorted(session.pending) == [str(i) for i in range(2, MAX_PENDING_LOGINS + 2)]


def test_a_flood_of_anonymous_sessions_evicts_anonymous_ones_before_logged_in_users() -> None:
    store = SessionStore(session_seconds=86400, max_sessions=10, clock=Clock())
    user_session = store.log_in(store.create(), USER)
    for _ in range(50):
        store.create()
    assert len(store) == 10
    assert store.get(user_session.id) is user_session


def test_unknown_or_missing_ids_are_no_session() -> None:
    store = SessionStore(session_seconds=10)
    assert store.get(None) is None and store.get("") is None and store.get("nope") is None
