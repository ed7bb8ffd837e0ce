"""What a Rucio health measurement means for the gates."""

from __future__ import annotations

import datetime as dt

from justin_flows.domain.health import RucioHealth

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)


def test_failed_ping_counts_as_overloaded_fixing_upstreams_99999_bug() -> None:
    """Upstream returns 99999 for a failed ping, which passes its default 100000 ms gate:
    a dead Rucio never stops submission. Here a failure is overloaded, on purpose."""
    health = RucioHealth(None, 100000, NOW, "ServerConnectionException: refused")
    assert health.overloaded
    assert "unreachable" in health.reason


def test_threshold_is_inclusive_like_the_allocator() -> None:
    assert RucioHealth(99, 100, NOW).overloaded is False
    assert RucioHealth(100, 100, NOW).overloaded is True


def test_json_round_trip_keeps_every_field() -> None:
    health = RucioHealth(12, 100000, NOW, None)
    again = RucioHealth.from_json(health.to_json())
    assert again == health
    assert '"overloaded": false' in health.to_json()
