"""A call made inside another call of the same service (MetaCat's lazy login inside the first
``create_dataset``) must not wait for a second in-flight slot.

Found by the fault-injection run: with faults shifting the timing, all four fan-out workers of
updateLogsDatasets held the MetaCat service's four slots inside ``create_dataset`` while the one
that took the adapter's lock waited for a fifth slot to log in: the flow hung for good.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from justin_flows.adapters.calls import ExternalService
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.ledger import Ledger
from justin_flows.settings import RetryPolicy
from justin_flows.testing.latency_proxy import LatencyProxy
from justin_flows.testing.metacat_double import MetaCatDouble
from tests.conftest import reset_caches
from tests.rucio_seed import unique

POLICY = RetryPolicy(attempts=1, backoff_seconds=0, max_backoff_seconds=0, jitter=0)


def test_a_nested_call_on_the_same_thread_does_not_take_a_second_slot() -> None:
    """Every slot held by an outer call whose body makes an inner call: no deadlock, and the
    limit still holds for the outer calls (never more than two at once)."""
    service = ExternalService("svc", POLICY, lambda e: False, max_in_flight=2, ledger=Ledger())
    both_inside = threading.Barrier(2, timeout=5)
    running = []
    peak = []
    lock = threading.Lock()

    def outer() -> str:
        with lock:
            running.append(1)
            peak.append(len(running))
        both_inside.wait()  # both slots are held now
        try:
            return service.call("inner", lambda: "done")
        finally:
            with lock:
                running.pop()

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(service.call("outer", outer)), daemon=True)
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "deadlock: the inner calls waited for a free slot"
    assert results == ["done"] * 4
    assert max(peak) == 2


def test_concurrent_first_metacat_calls_share_one_login_without_deadlock(
    metacat_env: MetaCatDouble, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Eight threads make the first calls of a fresh adapter at once, MetaCat 100 ms away."""
    with LatencyProxy(metacat_env.server_url.rsplit("/app", 1)[0], delay_ms=100) as proxy:
        monkeypatch.setenv("JUSTIN_METACAT__SERVER_OUTPUTS_URL", proxy.url_for(metacat_env.server_url))
        monkeypatch.setenv("JUSTIN_METACAT__AUTH_SERVER_URL", proxy.url_for(metacat_env.auth_url))
        reset_caches()
        adapter = MetaCatAdapter(service=ExternalService("metacat", POLICY, lambda e: False, max_in_flight=4,
                                                         ledger=Ledger()))  # fmt: skip
        start = threading.Barrier(8, timeout=5)
        done: list[str] = []

        def create(i: int) -> None:
            start.wait()
            adapter.create_dataset(f"justin-logs:{unique('nested')}-{i}")
            done.append("ok")

        threads = [threading.Thread(target=create, args=(i,), daemon=True) for i in range(8)]
        seen = len(metacat_env.requests)
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            assert not any(t.is_alive() for t in threads), "deadlock between the login and the operations"
            assert done == ["ok"] * 8
            logins = [r for r in metacat_env.requests[seen:] if "/auth/" in r.path and r.status == 200]
            assert len(logins) == 1, f"one login for all eight threads, got {len(logins)}"
        finally:
            adapter.close()
    reset_caches()
