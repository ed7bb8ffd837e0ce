"""``justin-flows wrapper-output``: a wrapper job's output phase, run as the wrapper-output flow.

Called at the end of the wrapper job with the job's working directory and the allocation
JSON (see ``justin_flows.output.allocation``). The allocation and the workspace are checked
before Prefect is started, so a bad call fails in a second with a clear message.

Exit status: 0 the job finished (every output stored and recorded); 3 the job's failure was
recorded (its abort code is printed); 2 the arguments, allocation or working directory are
unusable (nothing was done); 1 the output phase could not run or record its result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_FINISHED = 0
EXIT_FAILED_TO_RUN = 1
EXIT_BAD_INPUT = 2
EXIT_JOB_FAILED = 3
ALLOCATION_FILE = "justin-allocation.json"
#: HTCondor names the job's copies of its job and machine ads in these variables.
AD_VARIABLES = ("_CONDOR_JOB_AD", "_CONDOR_MACHINE_AD")


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("--workdir", default=os.environ.get("JUSTIN_WORKDIR"),
                        help="the job's working directory, holding home/workspace (default $JUSTIN_WORKDIR)")
    parser.add_argument("--allocation", metavar="FILE",
                        help=f"the allocation JSON (default <workdir>/{ALLOCATION_FILE})")
    parser.add_argument("--log-file", action="append", default=[], metavar="PATH",
                        help="another file for logs.tgz (repeatable; the job and machine ads are added by default)")
    parser.set_defaults(func=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog="justin-flows wrapper-output"))


def _check(workdir: str, allocation: Path) -> str | None:
    """Why the output phase cannot start, or None (no service is called)."""
    from justin_flows.output.job import load_output_job

    try:
        data = json.loads(allocation.read_text(encoding="utf-8"))
        load_output_job(workdir, data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"cannot read the allocation {allocation}: {exc}"
    except ValueError as exc:
        return str(exc)
    return None


def run(args: argparse.Namespace) -> int:
    """Run the flow for ``args.workdir`` / ``args.allocation``; print its outcome; exit status."""
    if not args.workdir:
        print("justin-flows wrapper-output: --workdir is required (or JUSTIN_WORKDIR)", file=sys.stderr)
        return EXIT_BAD_INPUT
    allocation = Path(args.allocation) if args.allocation else Path(args.workdir) / ALLOCATION_FILE
    problem = _check(args.workdir, allocation)
    if problem:
        print(f"justin-flows wrapper-output: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    extra = list(args.log_file) + [os.environ[v] for v in AD_VARIABLES if os.environ.get(v)]

    from flows.wrapper_output.output import wrapper_output_flow

    try:
        state = wrapper_output_flow(workdir=str(args.workdir), allocation_file=str(allocation), extra_log_files=extra,
                                    return_state=True)
    except Exception as exc:  # noqa: BLE001 - report, never a traceback with internals on the grid
        print(f"justin-flows wrapper-output: the output phase did not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED_TO_RUN
    result = state.result(raise_on_failure=False)
    if isinstance(result, dict):
        print(json.dumps({k: result[k] for k in ("justin_job_id", "jobsub_id", "job_state", "abort_code", "abort")}))
    print(f"justin-flows wrapper-output: {state.message}", file=sys.stderr)
    if state.is_completed():
        return EXIT_FINISHED
    if isinstance(result, dict) and result.get("abort_code") is not None and result.get("job_state"):
        return EXIT_JOB_FAILED
    return EXIT_FAILED_TO_RUN


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
