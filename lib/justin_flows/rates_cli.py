"""``justin-flows api-rates [--runs N] [--markdown FILE]``: the External API rates table.

Prints, per deployment, every service and operation with calls per run, runs per hour (from
``prefect.yaml``), calls per hour and day, error rate and p50/p95 latency, computed from the
external-call ledger (see ``justin_flows.rates``). ``--markdown FILE`` also writes the page.
Read-only: the ledger is pruned by the ``api-rates`` flow, not by this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from justin_flows import rates


def _runs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and 10000")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="justin-flows api-rates",
        description="External API rates per deployment, from the external-call ledger and prefect.yaml.",
    )
    parser.add_argument("--runs", type=_runs, default=rates.DEFAULT_RUNS,
                        help=f"recent runs of each deployment to sample (default {rates.DEFAULT_RUNS})")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the Markdown page to FILE")
    parser.add_argument("--prefect-yaml", type=Path, metavar="FILE",
                        help="deployments file with the schedules (default: the checkout's prefect.yaml)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of tables")
    return parser


def rates_main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for a bad argument or prefect.yaml)."""
    args = build_parser().parse_args(argv)
    try:
        rows, schedules, sample = rates.api_rates(args.runs, args.prefect_yaml)
    except (OSError, ValueError) as exc:
        print(f"justin-flows api-rates: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rates.rows_as_dicts(rows), indent=2))
    else:
        print(rates.render_text(rows, schedules), end="")
        if sample.calls_without_run:
            print(f"({sample.calls_without_run} call(s) outside any flow run not counted)")
    if args.markdown is not None:
        page = rates.render_markdown(rows, schedules, runs=args.runs, sample=sample)
        try:
            args.markdown.write_text(page)
        except OSError as exc:
            print(f"justin-flows api-rates: cannot write {args.markdown}: {exc}", file=sys.stderr)
            return 2
        print(f"Markdown page written to {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(rates_main())
