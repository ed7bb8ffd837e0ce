"""Names justIN gives to Rucio/MetaCat datasets, and the user-to-account name mapping.

Logs datasets (reference §2.6, updateLogsDatasets; used by the wrapper, §5.4): every RSE has
one ``justin-logs:logstgz-<period start>-<RSE>`` dataset per period of 10^6 s, and the
collector keeps the current period and the next two ready in advance, so a job that starts
just before a boundary still finds its dataset.
"""

from __future__ import annotations

import math
import re

LOGS_SCOPE = "justin-logs"
LOGS_PERIOD_SECONDS = 1_000_000
#: The current period and this many following ones are prepared (upstream: 2).
LOGS_PERIODS_AHEAD = 2

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def logs_period_start(now: float) -> int:
    """Start of the period holding ``now``: rounded *down* to a multiple of 10^6 s."""
    return int(math.floor(now / LOGS_PERIOD_SECONDS)) * LOGS_PERIOD_SECONDS


def logs_periods(now: float) -> list[int]:
    """Starts of the current period and the next two, oldest first."""
    start = logs_period_start(now)
    return [start + i * LOGS_PERIOD_SECONDS for i in range(LOGS_PERIODS_AHEAD + 1)]


def logs_dataset_name(rse: str, period_start: int) -> str:
    """The dataset name (without scope), e.g. ``logstgz-1710000000-MANCHESTER``."""
    if period_start % LOGS_PERIOD_SECONDS:
        raise ValueError(f"{period_start} is not the start of a logs period")
    return f"logstgz-{period_start}-{rse}"


def logs_dataset_did(rse: str, period_start: int) -> str:
    """The dataset as ``scope:name`` (the MetaCat DID has the same form)."""
    return f"{LOGS_SCOPE}:{logs_dataset_name(rse, period_start)}"


def principal_account_key(principal_name: str) -> str:
    """A justIN principal name in Rucio account form: each run of non-alphanumerics → ``_``.

    updateNamedQuotas (reference §2.7) links a Rucio account to the justIN user whose
    principal name has this key, e.g. ``amcnab@fnal.gov`` → ``amcnab_fnal_gov``.
    """
    return _NON_ALNUM.sub("_", principal_name)
