"""Prefect's own overhead per task run: 200 no-op tasks in one flow under an ephemeral server.

Measures the median wall time of an empty flow run, of a flow calling 200 no-op tasks one
after another, and of one mapping them (``map``, then waiting for all). ``run_all.py`` runs
it in its own process (Prefect in ephemeral mode under a temporary PREFECT_HOME); run alone,
it prints the numbers as JSON.
"""

from __future__ import annotations

import json
import statistics
import time

TASKS = 200


def measure() -> dict[str, float]:
    from prefect import flow, task
    from prefect.futures import wait

    @task
    def noop(i: int) -> int:
        return i

    @flow
    def empty_flow() -> None:
        return None

    @flow
    def sequential(n: int) -> int:
        return sum(noop(i) for i in range(n))

    @flow
    def mapped(n: int) -> int:
        futures = noop.map(range(n))
        wait(futures)
        return sum(f.result() for f in futures)

    def timed(fn: object, *args: int) -> float:
        start = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        return time.perf_counter() - start

    start = time.perf_counter()
    empty_flow()  # starts the ephemeral server
    startup = time.perf_counter() - start
    sequential(5)
    empty = statistics.median(timed(empty_flow) for _ in range(3))
    seq = statistics.median(timed(sequential, TASKS) for _ in range(2))
    mapped_s = statistics.median(timed(mapped, TASKS) for _ in range(2))
    return {"startup_s": startup, "empty_flow_s": empty, "sequential_s": seq, "mapped_s": mapped_s, "tasks": TASKS}


def run() -> object:
    """Measure in this process (its ephemeral Prefect server may already be up: the wrapper
    benchmark starts it)."""
    from harness import Measurement, Result, say, start_prefect_server_quietly

    say(f"Prefect overhead: {TASKS} no-op tasks in a flow, ephemeral server")
    start_prefect_server_quietly()
    m = measure()
    per_seq = (m["sequential_s"] - m["empty_flow_s"]) / TASKS * 1000
    per_map = (m["mapped_s"] - m["empty_flow_s"]) / TASKS * 1000
    say(f"  empty flow {m['empty_flow_s']:.2f} s, {TASKS} tasks sequential {m['sequential_s']:.2f} s, "
        f"mapped {m['mapped_s']:.2f} s (first flow run {m['startup_s']:.1f} s)")
    return Result(
        f"Prefect overhead, {TASKS} no-op tasks", Measurement(TASKS, m["sequential_s"], m), None,
        target="measured",
        notes=[f"{per_seq:.1f} ms per task run called in sequence, {per_map:.1f} ms per task run mapped; "
               f"an empty flow run {m['empty_flow_s'] * 1000:.0f} ms; so the storages flow's 7 tasks cost about "
               f"{7 * per_seq / 1000 + m['empty_flow_s']:.1f} s of Prefect per run"],
    )


if __name__ == "__main__":
    print(json.dumps(measure()))
