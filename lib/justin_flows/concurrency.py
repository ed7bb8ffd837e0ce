"""Bounded fan-out for per-item external calls (e.g. one set of Rucio calls per RSE)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    item: T
    value: R | None = None
    error: BaseException | None = None


def bounded_map(fn: Callable[[T], R], items: Iterable[T], max_workers: int) -> list[Outcome[T, R]]:
    """``fn`` over ``items`` with at most ``max_workers`` at once; results in input order.

    An item's exception is captured in its ``Outcome`` so one bad item never stops the rest.
    """

    def run(item: T) -> Outcome[T, R]:
        try:
            return Outcome(item, fn(item))
        except Exception as exc:  # noqa: BLE001 - reported per item by the caller
            return Outcome(item, None, exc)

    items = list(items)
    if max_workers <= 1 or len(items) <= 1:
        return [run(i) for i in items]
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="justin-fanout") as pool:
        return list(pool.map(run, items))
