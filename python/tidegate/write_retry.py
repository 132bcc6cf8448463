"""What the writers share about failed writes: which PostgreSQL errors mean the data itself
is refused, which failures may pass on a new connection, and how long to wait before the
next attempt."""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

log = logging.getLogger(__name__)

# Client-side failures after which the same write may succeed on a new connection
# (PostgreSQL's own errors are classified by SQLSTATE below).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    # A connection left mid-operation by an interrupted statement; a new one is used.
    asyncpg.InternalClientError,
)
# SQLSTATE classes in which PostgreSQL refuses the data itself (22 data exception, 23 integrity
# constraint violation, 54 program limit exceeded). Everything else (restarts, failovers, a
# full disk, a wrong password) is retried: dropping would lose data the database could take.
DATA_ERROR_CLASSES = frozenset({"22", "23", "54"})
FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 10.0
# Consecutive failures that open a sink's circuit, and how long it stays open before a trial.
FAILURES_TO_OPEN = 5
OPEN_SECONDS = 5.0


def refuses_the_data(exc: asyncpg.PostgresError) -> bool:
    """Whether retrying the same write cannot help: PostgreSQL refused the rows themselves."""
    return exc.sqlstate is not None and exc.sqlstate[:2] in DATA_ERROR_CLASSES


@dataclass
class Backoff:
    """Delays between attempts at one write: doubling up to ``MAX_DELAY_SECONDS``, and cut
    short by a shutdown deadline (``time.monotonic()``), after which there is no next try."""

    deadline: float | None = None
    delay: float = FIRST_DELAY_SECONDS
    # Whether an attempt has failed (the next one is a retry).
    tried: bool = False

    def next_delay(self) -> float | None:
        """The wait before the next attempt (with full jitter over its upper half, so that
        writers that failed together do not retry together), or None when the deadline has
        passed."""
        self.tried = True
        delay = self.delay * random.uniform(0.5, 1.0)
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        self.delay = min(self.delay * 2, MAX_DELAY_SECONDS)
        return delay


class CircuitState(enum.IntEnum):
    """A sink's circuit breaker state, as its metric reports it."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass
class CircuitBreaker:
    """Per sink: after ``FAILURES_TO_OPEN`` consecutive failed writes the circuit opens and
    no write is tried for ``OPEN_SECONDS``; then one trial (half-open) closes it on success
    or opens it again. Requests keep being accepted into the spool meanwhile."""

    sink: str
    on_change: Callable[[CircuitState], None]
    failures: int = 0
    state: CircuitState = CircuitState.CLOSED
    opened_at: float = field(default=0.0)

    def wait_seconds(self) -> float:
        """How long to wait before the next attempt (0 when it may go now)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        remaining = self.opened_at + OPEN_SECONDS - time.monotonic()
        if remaining > 0:
            return remaining
        self._set(CircuitState.HALF_OPEN)
        return 0.0

    def succeeded(self) -> None:
        self.failures = 0
        if self.state is not CircuitState.CLOSED:
            log.info("%s sink recovered: circuit closed", self.sink)
            self._set(CircuitState.CLOSED)

    def failed(self) -> None:
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED and self.failures >= FAILURES_TO_OPEN
        ):
            log.warning(
                "%s sink failed %d times in a row: circuit open for %.0f s",
                self.sink,
                self.failures,
                OPEN_SECONDS,
            )
            self.opened_at = time.monotonic()
            self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        self.state = state
        self.on_change(state)
