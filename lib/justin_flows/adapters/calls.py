"""The one mechanism every external call passes: counted, timed, limited and retried here.

An adapter owns one ``ExternalService``. ``call()`` runs one operation, records every
attempt in the ledger, retries only errors the adapter calls transient (with exponential
backoff and jitter), and keeps at most ``max_in_flight`` calls to the service running at once.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from justin_flows.ledger import LEDGER, CallRecord, Ledger, describe_error
from justin_flows.settings import RetryPolicy

T = TypeVar("T")


class ExternalCallError(RuntimeError):
    """An external call failed for good; names the service and operation, never a secret."""

    def __init__(self, service: str, operation: str, attempts: int, cause: BaseException) -> None:
        self.service = service
        self.operation = operation
        self.attempts = attempts
        self.cause = cause
        super().__init__(f"{service}.{operation} failed after {attempts} attempt(s): {describe_error(cause)}")


def backoff_delays(policy: RetryPolicy, rng: random.Random | None = None) -> list[float]:
    """The waits before attempts 2..N: doubling from ``backoff_seconds``, capped, jittered."""
    rng = rng or random.Random()
    delays = []
    for i in range(policy.attempts - 1):
        base = min(policy.backoff_seconds * (2**i), policy.max_backoff_seconds)
        delays.append(base * (1 - policy.jitter * rng.random()))
    return delays


class ExternalService:
    """Calls to one external service (rucio, metacat, htcondor, http, git, voms)."""

    def __init__(
        self,
        name: str,
        policy: RetryPolicy,
        is_transient: Callable[[BaseException], bool],
        max_in_flight: int = 4,
        ledger: Ledger = LEDGER,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.policy = policy
        self.is_transient = is_transient
        self.ledger = ledger
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._holding = threading.local()  # does this thread already hold one of the slots?
        self._sleep = sleep

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """One of the ``max_in_flight`` slots, unless this thread already holds one.

        A call made from inside another call of the same service on the same thread (the
        MetaCat adapter's lazy login inside ``create_dataset``) is part of that call: taking a
        second slot for it would deadlock as soon as every slot is held by threads waiting
        for that login.
        """
        if getattr(self._holding, "held", False):
            yield
            return
        with self._slots:
            self._holding.held = True
            try:
                yield
            finally:
                self._holding.held = False

    def call(self, operation: str, fn: Callable[[], T], *, attempts: int | None = None) -> T:
        """Run ``fn`` (one operation) with ledger records and transient-error retries.

        ``attempts`` overrides the policy, e.g. 1 where a retry would distort a measurement
        or where Prefect retries the surrounding task instead.
        """
        total = attempts or self.policy.attempts
        policy = self.policy if total == self.policy.attempts else self.policy.model_copy(update={"attempts": total})
        delays = backoff_delays(policy)
        for attempt in range(1, total + 1):
            started_at = dt.datetime.now(dt.timezone.utc)
            start = time.perf_counter()
            try:
                with self._slot():
                    result = fn()
            except Exception as exc:
                self.ledger.record(
                    CallRecord(
                        self.name, operation, attempt, "error", started_at,
                        (time.perf_counter() - start) * 1000, describe_error(exc),
                    )
                )
                if attempt == total or not self.is_transient(exc):
                    raise ExternalCallError(self.name, operation, attempt, exc) from exc
                self._sleep(delays[attempt - 1])
            else:
                self.ledger.record(
                    CallRecord(self.name, operation, attempt, "ok", started_at, (time.perf_counter() - start) * 1000)
                )
                return result
        raise AssertionError("unreachable")  # pragma: no cover
