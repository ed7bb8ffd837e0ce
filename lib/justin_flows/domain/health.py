"""Rucio health: what a measurement means for the flows that must not overload Rucio."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RucioHealth:
    """One health measurement (upstream testRucio / pingRucioMilliseconds).

    ``milliseconds`` is None when a ping failed. Unlike upstream, where a failed ping
    returns 99999 and so passes the default 100000 ms gate, a failure counts as overloaded.
    """

    milliseconds: int | None
    threshold_ms: int
    measured_at: dt.datetime
    error: str | None = None

    @property
    def overloaded(self) -> bool:
        return self.milliseconds is None or self.milliseconds >= self.threshold_ms

    @property
    def reason(self) -> str:
        if self.milliseconds is None:
            return f"Rucio unreachable: {self.error}"
        if self.overloaded:
            return f"Rucio overloaded: average ping {self.milliseconds} ms >= {self.threshold_ms} ms"
        return f"Rucio healthy: average ping {self.milliseconds} ms < {self.threshold_ms} ms"

    def backing_off(self, now: dt.datetime, window_seconds: float) -> bool:
        """True while an overloaded/down measurement is younger than ``window_seconds``:
        gated flows then skip without pinging, so a struggling Rucio gets no extra load."""
        return self.overloaded and (now - self.measured_at).total_seconds() < window_seconds

    def to_json(self) -> str:
        data = asdict(self)
        data["measured_at"] = self.measured_at.isoformat()
        data["overloaded"] = self.overloaded
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RucioHealth:
        data = json.loads(text)
        return cls(
            milliseconds=data["milliseconds"],
            threshold_ms=data["threshold_ms"],
            measured_at=dt.datetime.fromisoformat(data["measured_at"]),
            error=data.get("error"),
        )
