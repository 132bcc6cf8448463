"""The futures of appends and durability waits, and how the writer thread answers them (and
the fatal listeners) on their callers' event loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tidegate.spool.records import SpoolFatalError, SpoolRecord

# The package's name, not __name__: every spool message keeps the one logger name.
log = logging.getLogger("tidegate.spool")


@dataclass(eq=False, slots=True)
class _Pending:
    record: SpoolRecord
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


@dataclass(eq=False, slots=True)
class _Waiter:
    missing: list[int]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _settle(
    items: Iterable[_Pending | _Waiter], error: Callable[[], BaseException] | None = None
) -> None:
    """Resolve the futures, with ``error()`` if given, on their own loops: one wake-up per
    loop for the whole group rather than one per future."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for item in items:
        by_loop.setdefault(item.loop, []).append(item.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures, error)
        except RuntimeError:  # the loop is closed: nobody awaits these futures any more
            log.debug("spool: %d futures belong to a closed loop", len(futures))


def _resolve(
    futures: list[asyncio.Future[None]], error: Callable[[], BaseException] | None
) -> None:
    for future in futures:
        if future.done():  # cancelled by its caller
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error())


def _notify(listener: Callable[[BaseException], None], error: SpoolFatalError) -> None:
    try:
        listener(error)
    except Exception:
        log.exception("spool: a fatal listener raised")
