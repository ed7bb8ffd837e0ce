"""``justin-flows``: operator commands (database migrations, settings, the sandbox, workflows,
sites and storages) and the justIN UI commands (show-jobscript, show-files, show-replicas)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from justin_flows.settings import get_settings

if TYPE_CHECKING:
    from justin_flows.ui.result import CommandResult


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _distance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def parse_output(text: str) -> tuple[str, str, int, str]:
    """``PATTERN:DESTINATION[:LIFETIME_DAYS[:RSE_EXPR]]`` -> (pattern, destination, seconds, rse).

    The pattern holds no ``:``; DESTINATION may (an https:// URL), so the optional fields are
    taken from the right: a last field of digits is the lifetime, else a digits field before
    the last one is the lifetime and the last one the RSE expression (which holds no ``:``).
    """
    pattern, sep, rest = text.partition(":")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(f"--output {text!r}: expected PATTERN:DESTINATION[:LIFETIME_DAYS[:RSE_EXPR]]")
    parts = rest.split(":")
    days, rse = "1", ""
    if len(parts) >= 2 and parts[-1].isdigit():
        days, parts = parts[-1], parts[:-1]
    elif len(parts) >= 3 and parts[-2].isdigit():
        days, rse, parts = parts[-2], parts[-1], parts[:-2]
    if int(days) < 1:
        raise argparse.ArgumentTypeError(f"--output {text!r}: LIFETIME_DAYS must be at least 1")
    return pattern, ":".join(parts), int(days) * 86400, rse


def _workflow_create(args: argparse.Namespace) -> int:
    from justin_flows.admin import create_workflow

    workflow_id = create_workflow(
        args.mql,
        scope=args.scope,
        processors=args.processors,
        rss_bytes=args.rss_mib * 1048576,
        wall_seconds=args.wall_seconds,
        max_distance=args.max_distance,
        gpus=args.gpus,
        output_patterns=args.output,
        sites=args.site or None,
        state=args.state,
        principal_name=args.user,
        jobscript_image=args.jobscript_image,
    )
    print(f"created workflow {workflow_id} (stage 1, state {args.state})")
    return 0


def _site_enable(args: argparse.Namespace) -> int:
    from justin_flows.admin import enable_site

    site_id = enable_site(args.name)
    print(f"site {args.name} (id {site_id}) enabled")
    return 0


def _storage_enable(args: argparse.Namespace) -> int:
    from justin_flows.admin import enable_storage

    rse_id = enable_storage(args.name)
    print(f"storage {args.name} (id {rse_id}) enabled for justIN writes")
    return 0


def _add_admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workflow = sub.add_parser("workflow", help="justIN workflows").add_subparsers(dest="workflow_command", required=True)
    create = workflow.add_parser("create", help="create a workflow with one stage")
    create.add_argument("--mql", required=True, help="MetaCat query of the input files")
    create.add_argument("--scope", required=True, help="Rucio scope of the outputs")
    create.add_argument("--processors", type=_positive_int, default=1)
    create.add_argument("--rss-mib", type=_positive_int, default=2000, help="memory per job in MiB (default 2000)")
    create.add_argument("--wall-seconds", type=_positive_int, default=80000)
    create.add_argument("--max-distance", type=_distance, default=0.0, help="site-storage distance (default 0)")
    create.add_argument("--gpus", type=_non_negative_int, default=0)
    create.add_argument("--output", type=parse_output, action="append", default=[],
                        metavar="PATTERN:DESTINATION[:LIFETIME_DAYS[:RSE_EXPR]]",
                        help="an output pattern (repeatable); DESTINATION is a dataset name prefix or https:// URL")
    create.add_argument("--site", action="append", default=[], help="allow only this site (repeatable)")
    create.add_argument("--state", default="running", choices=["running", "paused", "submitted", "draft"])
    create.add_argument("--user", default="dunepro", help="principal name of the workflow's user")
    create.add_argument("--jobscript-image", default="", help="default: the configured jobscript image")
    create.set_defaults(func=_workflow_create)

    site = sub.add_parser("site", help="sites").add_subparsers(dest="site_command", required=True)
    site_enable = site.add_parser("enable", help="let justIN send jobs to a site")
    site_enable.add_argument("name")
    site_enable.set_defaults(func=_site_enable)

    storage = sub.add_parser("storage", help="storages").add_subparsers(dest="storage_command", required=True)
    storage_enable = storage.add_parser("enable", help="let justIN write outputs to a storage (RSE)")
    storage_enable.add_argument("name")
    storage_enable.set_defaults(func=_storage_enable)


def _ui_command(run: Callable[[], CommandResult]) -> int:
    """Print a UI command's answer; 0 on success, 2 for bad input, 1 when a service failed."""
    from justin_flows.ui import UIServiceError

    try:
        result = run()
    except UIServiceError as exc:
        print(f"justin-flows: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(result.text)
    return 0


def _show_jobscript(args: argparse.Namespace) -> int:
    from justin_flows.adapters.http import HTTPAdapter
    from justin_flows.ui.jobscripts import configured_base_url, show_jobscript, show_stage_jobscript

    if args.workflow_id is not None or args.stage_id is not None:
        if args.jobscript_git is not None:
            raise ValueError("give either ORG/REPO/PATH:TAG or --workflow-id with --stage-id, not both")
        if args.workflow_id is None or args.stage_id is None:
            raise ValueError("--workflow-id and --stage-id go together")
        return _ui_command(lambda: show_stage_jobscript(args.workflow_id, args.stage_id))
    if args.jobscript_git is None:
        raise ValueError("give ORG/REPO/PATH:TAG (or --workflow-id with --stage-id)")
    base_url = args.base_url or configured_base_url(get_settings())

    def run() -> CommandResult:
        with HTTPAdapter() as http:
            return show_jobscript(http, args.jobscript_git, base_url=base_url)

    return _ui_command(run)


def _show_files(args: argparse.Namespace) -> int:
    from justin_flows.adapters.metacat import MetaCatAdapter
    from justin_flows.ui.files import show_files

    def run() -> CommandResult:
        with MetaCatAdapter() as metacat:
            return show_files(
                metacat, mql=args.mql, workflow_id=args.workflow_id, stage_id=args.stage_id,
                file_did=args.file_did, limit=args.limit,
            )

    return _ui_command(run)


def _show_replicas(args: argparse.Namespace) -> int:
    from justin_flows.adapters.metacat import MetaCatAdapter
    from justin_flows.adapters.rucio import RucioAdapter
    from justin_flows.ui.replicas import show_replicas

    def run() -> CommandResult:
        with MetaCatAdapter() as metacat:
            return show_replicas(
                metacat, RucioAdapter(), mql=args.mql, workflow_id=args.workflow_id, stage_id=args.stage_id,
                file_did=args.file_did, rse_name=args.rse, limit=args.limit, chunk_size=args.chunk_size,
            )

    return _ui_command(run)


def _add_ui_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobscript = sub.add_parser(
        "show-jobscript", help="show a jobscript from GitHub (ORG/REPO/PATH:TAG), TLS verified"
    )
    jobscript.add_argument("jobscript_git", nargs="?", metavar="ORG/REPO/PATH:TAG",
                           help="TAG is a branch, tag or commit and is mandatory")
    jobscript.add_argument("--workflow-id", type=_positive_int, help="a stage's stored jobscript (not available here)")
    jobscript.add_argument("--stage-id", type=_positive_int)
    jobscript.add_argument("--base-url", default=None,
                           help="raw file server (default https://raw.githubusercontent.com)")
    jobscript.set_defaults(func=_show_jobscript)

    files = sub.add_parser("show-files", help="files of an MQL query (MetaCat) or of a workflow (database)")
    source = files.add_mutually_exclusive_group(required=True)
    source.add_argument("--mql", help="MetaCat query; the first --limit files are shown (default 100)")
    source.add_argument("--workflow-id", type=_positive_int, help="the workflow's files from the database")
    files.add_argument("--stage-id", type=_positive_int, help="with --workflow-id: only this stage")
    files.add_argument("--file-did", help="with --workflow-id: only this file")
    files.add_argument("--limit", type=_positive_int, default=None,
                       help="at most this many files (default: 100 for --mql, all for --workflow-id)")
    files.set_defaults(func=_show_files)

    replicas = sub.add_parser("show-replicas", help="replicas of an MQL query's files (Rucio) or of a workflow's")
    source = replicas.add_mutually_exclusive_group(required=True)
    source.add_argument("--mql", help="MetaCat query, or 'monte-carlo N'")
    source.add_argument("--workflow-id", type=_positive_int, help="the workflow's replicas from the database")
    replicas.add_argument("--stage-id", type=_positive_int, help="with --workflow-id: only this stage")
    replicas.add_argument("--file-did", help="with --workflow-id: only this file")
    replicas.add_argument("--rse", help="with --workflow-id: only this RSE")
    replicas.add_argument("--limit", type=_positive_int, default=None,
                          help="at most this many files (--mql; default all) or replicas (--workflow-id; default 100)")
    replicas.add_argument("--chunk-size", type=_positive_int, default=500,
                          help="files per Rucio list_replicas call (default 500)")
    replicas.set_defaults(func=_show_replicas)


def _dashboard(args: argparse.Namespace) -> int:
    from justin_flows.dashboard import DashboardConfigError, serve

    try:
        serve(args.host, args.port)
    except DashboardConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="justin-flows", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="results database").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply migrations (run before deploying a new version)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_db_upgrade)

    settings = sub.add_parser("settings", help="show the effective settings (secrets masked)")
    settings.set_defaults(func=_settings_show)

    from justin_flows.output.cli import configure_parser

    configure_parser(sub.add_parser("wrapper-output", help="a wrapper job's output phase (issue 5)"))

    # its own parser (lib/justin_flows/rates_cli.py); main() hands it the arguments
    sub.add_parser("api-rates", help="external calls per run, hour and day, from the ledger", add_help=False)

    dash = sub.add_parser("dashboard", help="serve the read-only dashboard (CILogon login)")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8080)
    dash.set_defaults(func=_dashboard)

    sandbox = sub.add_parser("sandbox", help="run every flow once against local services")
    sandbox.add_argument("--keep", action="store_true", help="leave the services running until Ctrl-C")
    sandbox.set_defaults(func=_sandbox)

    _add_admin_commands(sub)
    _add_ui_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["api-rates"]:
        from justin_flows.rates_cli import rates_main

        return rates_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"justin-flows: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
