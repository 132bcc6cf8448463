"""What the metrics and trace writers share around every write: the spool checkpoint and
accepted-request rows in the write's transaction, the check after a failure that may have
come after COMMIT, the circuit breaker, dead letters, and releasing spool segments."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from tidegate import checkpoints
from tidegate.checkpoints import Checkpoint
from tidegate.dead_letters import dead_letter
from tidegate.intake import Accepted, Intake
from tidegate.spool import SpoolError
from tidegate.telemetry import Telemetry
from tidegate.write_retry import Backoff, CircuitBreaker, CircuitState

log = logging.getLogger(__name__)


class Sink:
    """One writer's side of the spool: ``name`` is ``metrics`` or ``traces``, ``storage``
    says where its writes go."""

    def __init__(
        self,
        name: str,
        storage: str,
        intake: Intake,
        spool_id: str,
        telemetry: Telemetry,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        reset: Callable[[], Awaitable[None]],
        deadline: Callable[[], float | None],
    ) -> None:
        self.name = name
        self._storage = storage  # what the writes go to, for log lines
        self.intake = intake
        self._spool_id = spool_id
        self._telemetry = telemetry
        self._connect = connect
        self._reset = reset
        self._deadline = deadline
        state = telemetry.circuit_state.labels(name)
        self.breaker = CircuitBreaker(name, state.set)
        state.set(CircuitState.CLOSED)

    async def durable(self, seqs: list[int]) -> bool:
        """Wait until ``seqs`` are fsynced; False when the spool failed (the daemon is
        stopping, and nothing unacknowledged may be stored)."""
        try:
            await self.intake.wait_durable(seqs)
        except SpoolError as exc:
            log.error("%s not written: the spool failed (%s)", self.name, exc)
            return False
        return True

    async def circuit_wait(self) -> None:
        """While the circuit is open, wait (cut short by the shutdown deadline)."""
        wait = self.breaker.wait_seconds()
        deadline = self._deadline()
        if wait and deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        if wait:
            await asyncio.sleep(wait)
            self.breaker.wait_seconds()  # moves an open circuit whose time is up to half-open

    async def before_retry(self, exc: BaseException, backoff: Backoff) -> float | None:
        """After a failed attempt: the circuit, a new connection, and the delay before the
        next attempt, or None when shutdown has waited long enough."""
        self.breaker.failed()
        await self._reset()
        backoff.deadline = self._deadline()  # set by stop() even mid-retry
        delay = backoff.next_delay()
        if delay is not None:
            log.warning(
                "%s write to %s failed (%s: %s); retrying in %.1f s",
                self.name,
                self._storage,
                type(exc).__name__,
                exc,
                delay,
            )
        return delay

    async def write_checkpoint(
        self, conn: asyncpg.Connection, checkpoint: Checkpoint, accepted: list[Accepted]
    ) -> None:
        """The spool position and accepted-request rows, in the caller's transaction."""
        await checkpoints.save(conn, self._spool_id, self.name, checkpoint)
        await checkpoints.record_accepted(conn, accepted)

    async def committed_before(self, conn: asyncpg.Connection, checkpoint: Checkpoint) -> bool:
        """Whether an earlier attempt committed although its reply was lost."""
        if await checkpoints.committed(conn, self._spool_id, self.name, checkpoint):
            log.warning("%s: an earlier attempt committed, its reply was lost", self.name)
            return True
        return False

    def committed(self, seqs: list[int], keep_from: int | None = None) -> None:
        """After a commit: close the circuit and release the spool segments it allows."""
        self.breaker.succeeded()
        freed = self.intake.mark_committed(seqs, keep_from)
        if freed:
            self._telemetry.spool_released_bytes.labels(self.name).inc(freed)

    async def dead_letter(
        self,
        seqs: list[int],
        checkpoint: Checkpoint,
        accepted: list[Accepted],
        reason: str,
        also: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> bool:
        """Move the requests of ``seqs`` to the dead letters, with the checkpoint past them
        (and ``also``) in the same transaction; returns whether it committed."""

        async def in_same_transaction(conn: asyncpg.Connection) -> None:
            if also is not None:
                await also(conn)
            await self.write_checkpoint(conn, checkpoint, accepted)

        stored = await dead_letter(
            self._connect,
            self.intake,
            self.name,
            seqs,
            reason,
            in_same_transaction,
            self._reset,
            self._deadline,
        )
        if stored:
            self._telemetry.dead_letters.labels(self.name).inc()
        return stored

    def leave(self, what: str) -> bool:
        """Shutdown gave up on storage: True when the data stays in the spool for the next
        start (else it is lost, and the caller counts it)."""
        if self.intake.durable:
            log.warning(
                "%s storage unavailable at shutdown: %s stay in the spool and are written at "
                "the next start",
                self.name,
                what,
            )
            return True
        return False
