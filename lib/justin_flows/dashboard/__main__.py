"""``python -m justin_flows.dashboard [--host H] [--port P]``: the same as ``justin-flows dashboard``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from justin_flows.cli import main as cli_main

    return cli_main(["dashboard", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
