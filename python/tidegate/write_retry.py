"""What the writers share about failed writes: which PostgreSQL errors mean the data itself
is refused, which failures may pass on a new connection, and how long to wait before the
next attempt."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

# Client-side failures after which the same write may succeed on a new connection
# (PostgreSQL's own errors are classified by SQLSTATE below).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, asyncpg.InterfaceError)
# SQLSTATE classes in which PostgreSQL refuses the data itself (22 data exception, 23 integrity
# constraint violation, 54 program limit exceeded). Everything else (restarts, failovers, a
# full disk, a wrong password) is retried: dropping would lose data the database could take.
DATA_ERROR_CLASSES = frozenset({"22", "23", "54"})
FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 10.0


def refuses_the_data(exc: asyncpg.PostgresError) -> bool:
    """Whether retrying the same write cannot help: PostgreSQL refused the rows themselves."""
    return exc.sqlstate is not None and exc.sqlstate[:2] in DATA_ERROR_CLASSES


@dataclass
class Backoff:
    """Delays between attempts at one write: doubling up to ``MAX_DELAY_SECONDS``, and cut
    short by a shutdown deadline (``time.monotonic()``), after which there is no next try."""

    deadline: float | None = None
    delay: float = FIRST_DELAY_SECONDS

    def next_delay(self) -> float | None:
        """The wait before the next attempt, or None when the deadline has passed."""
        delay = self.delay
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return None
            delay = min(delay, remaining)
        self.delay = min(self.delay * 2, MAX_DELAY_SECONDS)
        return delay
