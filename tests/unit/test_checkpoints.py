"""What a metrics batch's checkpoint says, batch after batch: the sets a restart's replay
reads (``Checkpoint.after_metrics_batch``; the core's ReplayFilter says what each means)."""

from __future__ import annotations

from tidegate.checkpoints import I64_MAX, Checkpoint
from tidegate.spool import SeqSet

NOW = 1_700_000_000_000_000_000


def after(
    cp: Checkpoint,
    committed: int,
    extras: tuple[int, ...] = (),
    *,
    all_: bool,
    hours: bool,
    now: int = NOW,
) -> Checkpoint:
    return cp.after_metrics_batch(
        SeqSet(committed, extras), 1, now, flush_all=all_, flush_hours=hours
    )


def test_an_ordinary_batch_keeps_what_the_last_hour_flush_covered() -> None:
    cp = after(Checkpoint(), 4, all_=False, hours=False)
    assert (cp.closed_at_ns, cp.hours_closed_at_ns) == (NOW, NOW)
    assert cp.windows_written == cp.hour_flush_windows_written == SeqSet()
    assert cp.hour_flush == SeqSet()

    hour_flush = after(cp, 6, all_=False, hours=True)
    assert (hour_flush.hours_flushed_at_ns, hour_flush.hour_flush) == (NOW, SeqSet(6))
    assert hour_flush.hour_flush_windows_written == SeqSet()  # no shutdown wrote any

    later = NOW + 10**10
    ordinary = after(hour_flush, 9, all_=False, hours=False, now=later)
    assert (ordinary.closed_at_ns, ordinary.hours_closed_at_ns) == (later, later)
    assert (ordinary.hours_flushed_at_ns, ordinary.hour_flush) == (NOW, SeqSet(6))
    assert ordinary.committed == SeqSet(9)


def test_an_ordinary_batch_after_a_shutdown_keeps_both_sets() -> None:
    hours = after(
        after(Checkpoint(), 6, (8,), all_=True, hours=False), 6, (8,), all_=True, hours=True
    )
    later = NOW + 10**10
    ordinary = after(hours, 9, all_=False, hours=False, now=later)
    assert ordinary.closed_at_ns == later
    assert ordinary.hours_flushed_at_ns == I64_MAX
    assert ordinary.hour_flush == ordinary.windows_written == SeqSet(6, (8,))
    assert ordinary.hour_flush_windows_written == SeqSet(6, (8,))


def test_a_clean_shutdown_writes_every_window_then_every_hour() -> None:
    # Request 7 waits in the spool (deferred) while 8 is stored.
    windows = after(Checkpoint(), 6, (8,), all_=True, hours=False)
    assert (windows.closed_at_ns, windows.hours_closed_at_ns) == (I64_MAX, NOW)
    assert windows.shutdown_cut_short
    assert windows.windows_written == SeqSet(6, (8,))
    assert windows.hour_flush_windows_written == SeqSet()

    hours = after(windows, 6, (8,), all_=True, hours=True)
    assert (hours.closed_at_ns, hours.hours_closed_at_ns) == (I64_MAX, I64_MAX)
    assert not hours.shutdown_cut_short
    assert hours.hour_flush == hours.windows_written == SeqSet(6, (8,))
    assert hours.hour_flush_windows_written == SeqSet(6, (8,))
    assert 7 not in hours.windows_written


def test_after_a_restart_the_sets_change_only_at_the_next_shutdown_or_hour_flush() -> None:
    shutdown = after(Checkpoint(), 6, (8,), all_=True, hours=False)  # cut short after this
    # The restarted daemon stores request 7 and 9, then flushes the hours.
    hour_flush = after(shutdown, 9, all_=False, hours=True)
    assert hour_flush.windows_written == SeqSet(6, (8,))
    assert hour_flush.hour_flush_windows_written == SeqSet(6, (8,))
    assert hour_flush.hour_flush == SeqSet(9)
    # A second shutdown names every record committed; the hour flush's set stays as it was
    # until the shutdown's own hour batch.
    second = after(hour_flush, 10, all_=True, hours=False)
    assert second.windows_written == SeqSet(10)
    assert second.hour_flush_windows_written == SeqSet(6, (8,))


def test_a_shutdown_batch_that_also_flushes_the_hours_writes_both_sets() -> None:
    both = after(Checkpoint(), 5, all_=True, hours=True)
    assert both.windows_written == both.hour_flush_windows_written == SeqSet(5)
    assert (both.closed_at_ns, both.hours_closed_at_ns, both.hours_flushed_at_ns) == (
        I64_MAX,
        I64_MAX,
        I64_MAX,
    )
