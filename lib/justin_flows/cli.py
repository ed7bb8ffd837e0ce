"""``justin-flows``: operator commands (database migrations, settings, the sandbox)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from justin_flows.settings import get_settings


def _db_upgrade(args: argparse.Namespace) -> int:
    from justin_flows.db.migrate import upgrade

    upgrade(get_settings().database_url.get_secret_value(), args.revision)
    print(f"database upgraded to {args.revision}")
    return 0


def _settings_show(_args: argparse.Namespace) -> int:
    # SecretStr fields dump as '**********': safe to print
    print(json.dumps(get_settings().model_dump(mode="json"), indent=2, sort_keys=True))
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from justin_flows.sandbox import run_sandbox

    return run_sandbox(keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="justin-flows", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="results database").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply migrations (run before deploying a new version)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)

    settings = sub.add_parser("settings", help="show the effective settings (secrets masked)")
    settings.set_defaults(func=_settings_show)

    sandbox = sub.add_parser("sandbox", help="run every flow once against local services")
    sandbox.add_argument("--keep", action="store_true", help="leave the services running until Ctrl-C")
    sandbox.set_defaults(func=_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"justin-flows: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
