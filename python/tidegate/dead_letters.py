"""Requests that storage refuses for good go to ``tidegate_dead_letters`` instead of blocking
the ones after them: one row per spool record, with the request bytes (so that an operator can
inspect or resend it) and the reason, committed together with the writer's checkpoint past
them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from tidegate.config import DEFAULT_TENANT
from tidegate.intake import Intake
from tidegate.spool import SpoolRecord
from tidegate.write_retry import TRANSIENT_ERRORS, Backoff

log = logging.getLogger(__name__)


def _requests(intake: Intake, seqs: list[int]) -> dict[int, SpoolRecord]:
    """The spool records of ``seqs`` still in the spool (a scan: this path is rare)."""
    if intake.spool is None:
        return {}
    wanted = set(seqs)
    return {r.seq: r for r in intake.spool.records() if r.seq in wanted}


async def dead_letter(
    connect: Callable[[], Awaitable[asyncpg.Connection]],
    intake: Intake,
    sink: str,
    seqs: list[int],
    reason: str,
    in_same_transaction: Callable[[asyncpg.Connection], Awaitable[None]],
    reset: Callable[[], Awaitable[None]],
    deadline: Callable[[], float | None],
) -> bool:
    """Store the dead letters of ``seqs`` and, in the same transaction, what
    ``in_same_transaction`` writes (the checkpoint past them). Retried like any write until
    the shutdown deadline; returns whether it committed (if not, the records stay in the
    spool and come back at the next start)."""
    requests = await asyncio.to_thread(_requests, intake, seqs)
    rows = [
        (sink, [seq], reason, record.payload, record.tenant or DEFAULT_TENANT)
        if (record := requests.get(seq)) is not None
        else (sink, [seq], reason, None, DEFAULT_TENANT)
        for seq in seqs
    ] or [(sink, [], reason, None, DEFAULT_TENANT)]
    backoff = Backoff()
    while True:
        try:
            conn = await connect()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "tidegate_dead_letters",
                    records=rows,
                    columns=["sink", "seqs", "reason", "payload", "tenant"],
                )
                await in_same_transaction(conn)
        except (asyncpg.PostgresError, *TRANSIENT_ERRORS) as exc:
            await reset()
            backoff.deadline = deadline()
            delay = backoff.next_delay()
            if delay is None:
                log.error(
                    "could not store %d dead letters (%s); they stay in the spool", len(rows), exc
                )
                return False
            log.warning("storing dead letters failed (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
        else:
            log.error(
                "%s: %d spool records moved to tidegate_dead_letters: %s",
                sink,
                len(seqs),
                reason,
            )
            return True
