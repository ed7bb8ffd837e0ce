"""``python -m justin_flows.dashboard [--host H] [--port P]``: serve the dashboard."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from justin_flows.dashboard.config import DashboardConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m justin_flows.dashboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    args = parser.parse_args(argv)
    from justin_flows.dashboard.app import serve

    try:
        serve(args.host, args.port)
    except DashboardConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
