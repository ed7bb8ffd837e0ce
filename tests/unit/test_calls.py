"""The external-call mechanism: counting, timing, retrying and limiting in one place."""

from __future__ import annotations

import threading
import time

import pytest

from justin_flows.adapters.calls import ExternalCallError, ExternalService, backoff_delays
from justin_flows.ledger import Ledger
from justin_flows.secrets import register_secret
from justin_flows.settings import RetryPolicy


class Flaky(Exception):
    pass


class Final(Exception):
    pass


def service(ledger: Ledger, attempts: int = 3, max_in_flight: int = 4) -> tuple[ExternalService, list[float]]:
    slept: list[float] = []
    svc = ExternalService(
        "svc",
        RetryPolicy(attempts=attempts, backoff_seconds=1.0, jitter=0.0),
        lambda e: isinstance(e, Flaky),
        max_in_flight=max_in_flight,
        ledger=ledger,
        sleep=slept.append,
    )
    return svc, slept


def test_transient_error_is_retried_to_three_attempts_with_doubling_backoff() -> None:
    ledger = Ledger()
    svc, slept = service(ledger)
    calls = iter([Flaky("a"), Flaky("b"), "done"])

    def op() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert svc.call("op", op) == "done"
    assert [(r.attempt, r.outcome) for r in ledger.snapshot()] == [(1, "error"), (2, "error"), (3, "ok")]
    assert slept == [1.0, 2.0]


def test_gives_up_after_the_last_attempt_and_names_service_and_operation() -> None:
    ledger = Ledger()
    svc, _ = service(ledger)

    def op() -> None:
        raise Flaky("still down")

    with pytest.raises(ExternalCallError, match=r"svc\.op failed after 3 attempt\(s\): Flaky: still down") as info:
        svc.call("op", op)
    assert info.value.attempts == 3
    assert len(ledger.snapshot()) == 3


def test_final_error_is_not_retried() -> None:
    ledger = Ledger()
    svc, slept = service(ledger)

    def op() -> None:
        raise Final("no such thing")

    with pytest.raises(ExternalCallError):
        svc.call("op", op)
    assert [r.outcome for r in ledger.snapshot()] == ["error"] and slept == []


def test_attempts_override_for_measurements() -> None:
    ledger = Ledger()
    svc, _ = service(ledger)

    def op() -> None:
        raise Flaky("x")

    with pytest.raises(ExternalCallError):
        svc.call("ping", op, attempts=1)
    assert len(ledger.snapshot()) == 1


def test_errors_in_the_ledger_never_hold_a_secret() -> None:
    ledger = Ledger()
    svc, _ = service(ledger, attempts=1)
    register_secret("canary-secret-7f3a")

    def op() -> None:
        raise Final("auth failed for token canary-secret-7f3a")

    with pytest.raises(ExternalCallError) as info:
        svc.call("login", op)
    assert "canary-secret-7f3a" not in str(info.value)
    assert "canary-secret-7f3a" not in (ledger.snapshot()[0].error or "")
    assert "***" in (ledger.snapshot()[0].error or "")


def test_in_flight_calls_are_bounded() -> None:
    ledger = Ledger()
    svc, _ = service(ledger, max_in_flight=2)
    active = 0
    peak = 0
    lock = threading.Lock()

    def op() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1

    threads = [threading.Thread(target=svc.call, args=("op", op)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
    assert len(ledger.snapshot()) == 8


def test_jitter_only_shortens_waits_and_cap_applies() -> None:
    policy = RetryPolicy(attempts=5, backoff_seconds=10, max_backoff_seconds=25, jitter=0.5)
    delays = backoff_delays(policy)
    caps = [10, 20, 25, 25]
    assert all(cap * 0.5 <= d <= cap for d, cap in zip(delays, caps, strict=True))
