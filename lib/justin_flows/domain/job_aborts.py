"""The wrapper job's abort codes and the job states they lead to (reference §5.1-§5.6).

Upstream's wrapper ends a failed output phase by sending ``job_aborted_<code>`` to the
allocator, which maps the code to the job's final state and logs an event whose type is the
code. The codes keep upstream's meaning here so operators reading ``jobs.abort_code`` or the
``events`` table see the same numbers as before.
"""

from __future__ import annotations

import enum


class AbortCode(enum.IntEnum):
    """Why a job's output phase stopped (the event type logged for it, too)."""

    RECORD_RESULTS = 312  # the results could not be recorded (or clash with another job's)
    LOGS_TGZ = 313  # logs.tgz could not be built
    LOGS_METADATA = 314  # logs.tgz's catalogue record could not be prepared
    LOGS_METACAT = 315  # logs.tgz declare or check in MetaCat failed
    LOGS_UPLOAD = 316  # logs.tgz reached none of the output RSEs (or there are none)
    WEBDAV_UPLOAD = 317  # an https (WebDAV) destination could not be written
    OUTPUT_METADATA = 318  # an output's metadata, checksum or name could not be prepared
    OUTPUT_METACAT = 319  # an output's MetaCat declare or dataset add failed
    OUTPUT_UPLOAD = 320  # an output reached none of the output RSEs (or its datasets failed)
    OUTPUT_STATUS = 321  # an output's MetaCat status could not be set to uploaded
    CONFIRM_RESULTS = 322  # the confirmation could not be recorded
    JOBSCRIPT_ERROR = 324  # the jobscript exited non-zero (reported after the logs upload)
    SILENT_UPLOAD_FAILURE = 328  # an upload "succeeded" without a replica or dataset membership


#: Event type ids from upstream's events list (reference §0.2).
JOB_OUTPUTTING = 304
JOB_FINISHED = 305
FILE_CREATED = 404

_OUTPUTTING_FAILED = frozenset({313, 314, 315, 316, 317, 318, 319, 320, 321, 328})


def job_state_for_abort(code: int) -> str:
    """The job state the allocator gives an aborted job (services/justin-wsgi-allocator mapping).

    324 → ``jobscript_error``; the output-phase codes 313-321 and 328 → ``outputting_failed``;
    anything else (312, 322, ...) → ``aborted``.
    """
    if code == AbortCode.JOBSCRIPT_ERROR:
        return "jobscript_error"
    if code in _OUTPUTTING_FAILED:
        return "outputting_failed"
    return "aborted"
