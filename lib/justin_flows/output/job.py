"""One job's output phase: its allocation, its workspace, what was found there, how steps report.

The wrapper's output phase (reference §5.2-§5.6) runs as steps: prepare (find the outputs,
mark the job outputting), logs.tgz, datasets, each output file, MetaCat datasets and status,
results to the database, confirmation. Every step returns a ``StepReport``: the collector
report (counts, per-item errors, the operator's table) plus the ``Abort`` that ends the job,
if the step hit one. Upstream's silent paths are aborts here, each with upstream's code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from justin_flows.collector.report import CollectorReport
from justin_flows.domain.job_aborts import AbortCode
from justin_flows.domain.output_datasets import DatasetSpec, dataset_metadata, output_datasets, per_rse_dataset
from justin_flows.domain.output_files import OutputFile, RefusedFile, discover_output_files
from justin_flows.output.allocation import Allocation, OutputRse, PatternDestination, parse_allocation
from justin_flows.settings import get_settings

WORKSPACE = Path("home") / "workspace"
#: ``dune.workflow`` fields of a dataset's MetaCat metadata taken from the allocation's stage.
STAGE_FIELDS = ("user", "processors", "rss_bytes", "wall_seconds", "jobscript_image")


@dataclass(frozen=True)
class Abort:
    """Why the job's output phase ended early: upstream's code and a message naming the item."""

    code: AbortCode
    message: str
    rse: str | None = None


@dataclass
class StepReport(CollectorReport):
    """A collector report plus the abort (the first one) that ends the job, if any."""

    abort: Abort | None = None

    def fail(self, code: AbortCode, message: str, rse: str | None = None) -> None:
        self.error(message)
        if self.abort is None:
            self.abort = Abort(code, message, rse)


@dataclass(frozen=True)
class OutputJob:
    """Everything the steps need to know about the job; built once by ``prepare_output_job``."""

    workdir: Path
    allocation: Allocation
    instance: str
    outputs: tuple[OutputFile, ...] = ()
    refused: tuple[RefusedFile, ...] = ()
    #: Set when the outputs are not to be stored at all; reported right after the logs upload.
    stop_after_logs: Abort | None = None

    @property
    def workspace(self) -> Path:
        return self.workdir / WORKSPACE

    @property
    def scope(self) -> str:
        return self.allocation.scope

    def file_did(self, name: str) -> str:
        return f"{self.allocation.scope}:{name}"

    def output_stage_id(self, pattern: PatternDestination) -> int:
        """The ``files.stage_id`` of an output: the next stage's, or 0 for a final output."""
        return self.allocation.stage_id + 1 if pattern.for_next_stage else 0

    def workflow_fields(self) -> dict[str, Any]:
        """The ``dune.workflow`` fields of an output file's metadata."""
        a = self.allocation
        return {**a.job, "workflow_id": a.workflow_id, "stage_id": a.stage_id, "job_id": a.jobsub_id}

    def _dataset_metadata(self, pattern: PatternDestination) -> dict[str, Any]:
        a = self.allocation
        fields: dict[str, Any] = {
            "workflow_id": a.workflow_id, "stage_id": a.stage_id, "pattern_id": pattern.pattern_id,
            "file_pattern": pattern.file_pattern,
        }
        for key in STAGE_FIELDS:
            fields[key] = a.stage.get(key, a.job.get(key))
        if a.stage_id == 1 and a.stage.get("mql"):
            fields["mql"] = a.stage["mql"]
        return dataset_metadata(fields)

    def pattern_datasets(self, pattern: PatternDestination) -> tuple[DatasetSpec, DatasetSpec]:
        """The pattern's numbered and overall datasets."""
        return output_datasets(
            scope=self.scope,
            destination=pattern.destination,
            number=pattern.destination_number,
            lifetime_seconds=pattern.lifetime_seconds,
            rse_expression=pattern.rse_expression,
            metadata=self._dataset_metadata(pattern),
        )

    def rse_dataset(self, pattern: PatternDestination, rse: OutputRse) -> DatasetSpec:
        """The pattern's per-RSE dataset on ``rse``."""
        a = self.allocation
        return per_rse_dataset(
            scope=self.scope, instance=self.instance, workflow_id=a.workflow_id, stage_id=a.stage_id,
            pattern_id=pattern.pattern_id, rse=rse.rse, lifetime_seconds=pattern.lifetime_seconds,
            metadata=self._dataset_metadata(pattern),
        )


def load_output_job(
    workdir: str | os.PathLike[str], allocation: Mapping[str, Any], *, instance: str | None = None
) -> OutputJob:
    """Check the allocation, find the outputs and decide whether they are to be stored.

    No external call and no database write: a bad allocation or working directory raises
    ``ValueError`` before anything happens. ``stop_after_logs`` is set when the outputs must
    not be stored: the jobscript failed (324, as upstream after the logs upload), a matching
    file cannot be an output (318: refused clearly, before anything is declared), or a
    pattern with files has a WebDAV destination, which this flow does not write (317).
    """
    root = Path(workdir)
    if not (root / WORKSPACE).is_dir():
        raise ValueError(f"{root} is not a job working directory: {WORKSPACE} is missing")
    parsed = parse_allocation(allocation)
    job = OutputJob(root.resolve(), parsed, instance or get_settings().instance)
    if parsed.jobscript_exit != 0:
        failed = Abort(
            AbortCode.JOBSCRIPT_ERROR,
            f"the jobscript exited with {parsed.jobscript_exit}; its outputs are not stored",
        )
        return OutputJob(job.workdir, parsed, job.instance, stop_after_logs=failed)
    found = discover_output_files(job.workspace, [(p.pattern_id, p.file_pattern) for p in parsed.patterns])
    stop: Abort | None = None
    if found.refused:
        listed = "; ".join(f"{r.name!r} (pattern {r.pattern_id}): {r.reason}" for r in found.refused)
        stop = Abort(AbortCode.OUTPUT_METADATA, f"{len(found.refused)} output file(s) refused, none stored: {listed}")
    else:
        webdav = sorted({f.pattern_id for f in found.files if parsed.pattern(f.pattern_id).is_webdav})
        if webdav:
            stop = Abort(
                AbortCode.WEBDAV_UPLOAD,
                f"pattern(s) {webdav} have https:// (WebDAV) destinations, which this flow does not write; "
                "no outputs stored",
            )
    return OutputJob(job.workdir, parsed, job.instance, found.files, found.refused, stop)


def outputs_by_pattern(job: OutputJob) -> dict[int, list[OutputFile]]:
    grouped: dict[int, list[OutputFile]] = {}
    for f in job.outputs:
        grouped.setdefault(f.pattern_id, []).append(f)
    return grouped

