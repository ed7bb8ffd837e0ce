"""Run every benchmark in one process and print one side-by-side table (not part of the tests).

    .venv/bin/python benchmarks/run_all.py [--delay-ms 50] [--in-flight 4,16] [--only storages,finder,...]

Each benchmark runs this project's code and a baseline making upstream's calls in upstream's
order (``baselines.py``) against the same seeded data, with a latency proxy (default 50 ms
per request) in front of the real Rucio server (on PostgreSQL, with a memcached stand-in,
see ``harness.py``) and the MetaCat double, and reports calls and wall time for both and
their ratio. ``--in-flight`` lists the per-service in-flight limits
(``JUSTIN_RUCIO__MAX_IN_FLIGHT``) the storages group is run with (default 4, the setting's
default, and 16); the finder, bound by the server's CPU, runs with the first. Prefect runs in
ephemeral mode under a temporary PREFECT_HOME. Everything started is thrown away at the end;
``kill -USR1 <pid>`` prints every thread's stack.
"""

from __future__ import annotations

import argparse
import atexit
import faulthandler
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("JUSTIN_RETRY__BACKOFF_SECONDS", "0.2")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")  # its shutdown at exit is noisy otherwise
# Prefect runs in ephemeral mode on a throw-away home: no configured server, no ~/.prefect
for _key in [k for k in os.environ if k.startswith("PREFECT_API_")]:
    del os.environ[_key]
_PREFECT_HOME = tempfile.mkdtemp(prefix="apirates-bench-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, True)  # registered first, so it runs after Prefect's own stop

from harness import BenchServices, Result, say  # noqa: E402

ALL = ("storages", "finder", "sites", "job_factory", "prefect", "wrapper")


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds:.2f}"


def table(results: list[Result]) -> str:
    header = ("benchmark", "calls", "base calls", "calls ratio", "wall s", "base wall s", "wall ratio", "target", "met")
    rows = []
    for r in results:
        if r.skipped:
            rows.append((r.name, "-", "-", "-", "-", "-", "-", r.target or "-", "skipped"))
            continue
        p, b = r.project, r.baseline
        calls_ratio = f"{p.calls / b.calls:.2f}" if p and b and b.calls else "-"
        wall_ratio = f"{p.seconds / b.seconds:.3f}" if p and b and b.seconds and not math.isnan(b.seconds) else "-"
        rows.append((
            r.name, str(p.calls) if p else "-", str(b.calls) if b else "-", calls_ratio,
            _fmt_s(p.seconds if p else None), _fmt_s(b.seconds if b else None), wall_ratio,
            r.target or "-", {True: "yes", False: "NO", None: "-"}[r.met],
        ))
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) if i in (0, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    notes = [f"  {r.name}: {n}" for r in results for n in ([r.skipped] if r.skipped else r.notes)]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))


def _wrapper(services: BenchServices) -> list[Result]:
    import bench_wrapper

    if not (Path(__file__).resolve().parents[1] / "lib" / "justin_flows" / "output" / "__init__.py").is_file():
        return [bench_wrapper.skipped("lib/justin_flows/output/ does not exist yet")]
    return bench_wrapper.run(services)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--in-flight", default="4,16", help="comma-separated max_in_flight values for the project")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    args = parser.parse_args(argv)
    # a SIGTERM (e.g. from `timeout`) unwinds the context managers, so every server and
    # database this run started is stopped and dropped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` prints every thread's stack
    only = set(args.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}")
    in_flight = [int(x) for x in args.in_flight.split(",") if x]
    started = time.perf_counter()
    results: list[Result] = []

    if only & {"storages", "finder", "sites", "wrapper"}:
        import bench_finder
        import bench_sites
        import bench_storages

        with BenchServices(delay_ms=args.delay_ms) as services:
            if "storages" in only or "finder" in only:  # the finder needs the storages in the database
                storages_results = bench_storages.run(services, in_flight)
                if "storages" in only:
                    results += storages_results
            if "finder" in only:
                results += bench_finder.run(services, in_flight[:1])  # server-bound: one limit is enough
            if "sites" in only:
                results += bench_sites.run(services)
            if "wrapper" in only:
                results += _wrapper(services)
    if "job_factory" in only:
        import bench_factory_wrap

        results.append(bench_factory_wrap.run())
    if "prefect" in only:
        import bench_prefect

        results.append(bench_prefect.run())

    total = time.perf_counter() - started
    say("")
    say(f"=== benchmarks ({args.delay_ms:g} ms proxy latency; calls = HTTP requests at the proxies, "
        f"or process runs for git/condor; ratio = project / baseline) ===")
    say(table(results))
    say(f"\nall benchmarks finished in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
