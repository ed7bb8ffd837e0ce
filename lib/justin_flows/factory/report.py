"""The factory's report: a ``CollectorReport`` that also says where the cycle's time went."""

from __future__ import annotations

from dataclasses import dataclass, field

from justin_flows.collector.report import CollectorReport


@dataclass
class FactoryReport(CollectorReport):
    """``timings`` (seconds): ``plan`` (database reads and planning), ``submit``
    (condor_submit, summed), ``record`` (recording transactions, summed)."""

    timings: dict[str, float] = field(default_factory=lambda: {"plan": 0.0, "submit": 0.0, "record": 0.0})
