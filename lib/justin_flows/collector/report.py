"""What a collector function tells the flow: counts, per-item errors, rows for the UI."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CollectorReport:
    """Outcome of one collector function (named by its upstream function).

    ``errors`` are per-item problems (one bad RSE, site or entry) that were skipped while
    every other item was stored; ``rows`` is the operator-facing table for the artifact.
    """

    function: str
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def error(self, message: str) -> None:
        self.errors.append(message)

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.counts.items())]
        if self.errors:
            parts.append(f"errors={len(self.errors)}")
        return f"{self.function}: " + (", ".join(parts) or "nothing to do")
