"""The output datasets in MetaCat and Rucio, with their rules (createDatasets and
jobutils/justin-job-datasets, reference §5.5 step 3 and §5.7).

For each dataset a job needs and the allocator did not list as existing: MetaCat
``create_dataset``, Rucio ``add_dataset``, then the rule (``copies=1``) where §5.3 gives one.
"Already exists" (MetaCat 409, ``DataIdentifierAlreadyExists``) and ``DuplicateRule`` count as
success, so a dataset another job created at the same moment is fine.

Deliberate differences from upstream, each for a reason:

* **A failed creation is a failure** (upstream ignores the script's exit code and reports
  every dataset as created). A failed MetaCat creation stops before Rucio, so the two
  catalogues never drift apart, and the dataset is reported as not created.
* **Each dataset is made once per job run**: the numbered and overall datasets before the
  first upload, each per-RSE dataset when its RSE is first tried (upstream rebuilds the list
  and reruns the whole script for every RSE attempt). A failure is remembered for the run,
  so later files do not repeat the same failing calls.
* The logs dataset is normally made in advance by updateLogsDatasets (§2.6); it is checked
  with one ``get_did`` and only created when missing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from justin_flows.adapters.calls import ExternalCallError
from justin_flows.adapters.metacat import MetaCatAdapter
from justin_flows.adapters.rucio import RucioAdapter
from justin_flows.domain.job_aborts import AbortCode
from justin_flows.domain.output_datasets import RULE_COPIES, DatasetSpec
from justin_flows.output.job import OutputJob, StepReport, outputs_by_pattern

FUNCTION = "createDatasets"


class DatasetError(RuntimeError):
    """A dataset could not be made ready; the message names the dataset and the step."""


@dataclass(frozen=True)
class EnsuredDataset:
    """How one dataset was made ready: per catalogue ``created``, ``existing`` or ``skipped``
    (listed by the allocator); the rule ``added``, ``existing``, ``none`` or ``skipped``."""

    spec: DatasetSpec
    metacat: str
    rucio: str
    rule: str

    def row(self) -> dict[str, Any]:
        return {"dataset": self.spec.did, "kind": self.spec.kind, "metacat": self.metacat, "rucio": self.rucio,
                "rule": self.rule, "rule_rse_expression": self.spec.rule_rse_expression or "",
                "rule_lifetime_seconds": self.spec.rule_lifetime_seconds}


class DatasetEnsurer:
    """Makes datasets ready at most once per run; safe to use from the per-file threads."""

    def __init__(self, rucio: RucioAdapter, metacat: MetaCatAdapter, existing: frozenset[str] = frozenset()) -> None:
        self.rucio = rucio
        self.metacat = metacat
        self.existing = existing
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, EnsuredDataset] = {}
        self._failed: dict[str, str] = {}

    @property
    def ensured(self) -> list[EnsuredDataset]:
        """Every dataset made ready so far, in the order they were first asked for."""
        with self._lock:
            return list(self._done.values())

    def ensure(self, spec: DatasetSpec, *, check_first: bool = False) -> EnsuredDataset:
        """``spec`` ready in both catalogues with its rule, or ``DatasetError``.

        ``check_first``: one ``get_did`` first, and nothing else if Rucio has it (for datasets
        that are normally made in advance, as the logs datasets are).
        """
        with self._lock:
            lock = self._locks.setdefault(spec.did, threading.Lock())
        with lock:
            if spec.did in self._done:
                return self._done[spec.did]
            if spec.did in self._failed:
                raise DatasetError(self._failed[spec.did])
            try:
                result = self._ensure(spec, check_first)
            except DatasetError as exc:
                self._failed[spec.did] = str(exc)
                raise
            with self._lock:
                self._done[spec.did] = result
            return result

    def _ensure(self, spec: DatasetSpec, check_first: bool) -> EnsuredDataset:
        from metacat.webapi.webapi import AlreadyExistsError
        from rucio.common.exception import DataIdentifierAlreadyExists, DataIdentifierNotFound, DuplicateRule

        if spec.did in self.existing:
            return EnsuredDataset(spec, "skipped", "skipped", "skipped")
        if check_first:
            try:
                self.rucio.get_did(spec.scope, spec.name)
                return EnsuredDataset(spec, "skipped", "existing", "skipped")
            except ExternalCallError as exc:
                if not isinstance(exc.cause, DataIdentifierNotFound):
                    raise DatasetError(f"{spec.did}: checking the Rucio dataset failed: {exc}") from exc
        try:
            self.metacat.create_dataset(spec.did, metadata=dict(spec.metadata) or None)
            metacat = "created"
        except ExternalCallError as exc:
            if not isinstance(exc.cause, AlreadyExistsError):
                raise DatasetError(
                    f"{spec.did}: creating the MetaCat dataset failed, Rucio dataset not created: {exc}"
                ) from exc
            metacat = "existing"
        try:
            self.rucio.add_dataset(spec.scope, spec.name)
            rucio = "created"
        except ExternalCallError as exc:
            if not isinstance(exc.cause, DataIdentifierAlreadyExists):
                raise DatasetError(f"{spec.did}: creating the Rucio dataset failed: {exc}") from exc
            rucio = "existing"
        rule = "none"
        if spec.rule_rse_expression:
            try:
                self.rucio.add_replication_rule(
                    dids=[{"scope": spec.scope, "name": spec.name}],
                    copies=RULE_COPIES,
                    rse_expression=spec.rule_rse_expression,
                    lifetime=spec.rule_lifetime_seconds,
                )
                rule = "added"
            except ExternalCallError as exc:
                if not isinstance(exc.cause, DuplicateRule):
                    raise DatasetError(
                        f"{spec.did}: adding the rule on {spec.rule_rse_expression} failed: {exc}"
                    ) from exc
                rule = "existing"
        return EnsuredDataset(spec, metacat, rucio, rule)


def ensure_output_datasets(job: OutputJob, datasets: DatasetEnsurer) -> StepReport:
    """The numbered and overall dataset of every pattern that has outputs (before any upload).

    Per-RSE datasets are made by ``store_output_files`` when their RSE is tried. A failure
    is abort 320: no output of the job can be attached where it belongs.
    """
    report = StepReport(FUNCTION)
    for pattern_id in sorted(outputs_by_pattern(job)):
        pattern = job.allocation.pattern(pattern_id)
        for spec in job.pattern_datasets(pattern):
            try:
                ensured = datasets.ensure(spec)
            except DatasetError as exc:
                report.fail(AbortCode.OUTPUT_UPLOAD, str(exc))
                report.rows.append({"dataset": spec.did, "kind": spec.kind, "metacat": "", "rucio": "",
                                    "rule": "failed"})
                report.count("failed")
                continue
            report.rows.append(ensured.row())
            report.count(f"{spec.kind}_{ensured.rucio}")
    return report
