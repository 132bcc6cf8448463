"""``LiveSettings``: follows the configured source, keeps the last valid value of every key and
tells subscribers about each change of the values in force."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from tidegate.config import Config
from tidegate.errors import ConfigError, LiveSourceError
from tidegate.live.settings import Value, parse_value, rejection_label
from tidegate.live.snapshot import LiveSnapshot
from tidegate.live.sources import LiveSource, SourceEvents, open_source

log = logging.getLogger(__name__)

Subscriber = Callable[[LiveSnapshot], None]
# How long start() waits for the source's first answer before going on with what it has.
START_WAIT_SECONDS = 10.0


class LiveMetrics:
    """The manager's metrics, registered on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "tidegate_live_config_rejected",
            "Live setting values rejected as invalid, by key family; the previous value stays.",
            ["key"],
            registry=registry,
        )
        self.source_up = Gauge(
            "tidegate_live_config_source_up",
            "1 while the live settings source answers, 0 while it is unreachable.",
            registry=registry,
        )
        self.reloads = Counter(
            "tidegate_live_config_reloads",
            "Full reads of the live settings source, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.last_change = Gauge(
            "tidegate_live_config_last_change_timestamp_seconds",
            "Unix time at which the live settings in force last changed.",
            registry=registry,
        )


class LiveSettings:
    """The live settings in force, kept up to date from the source ``config.live`` names.

    A value that does not validate is logged, counted and ignored: the key keeps its previous
    valid value (or stays unset). While the source is unreachable the values in force stay,
    and the source is retried with backoff.
    """

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry,
        *,
        config_file: str | Path | None = None,
        dsn: str | None = None,
        source: LiveSource | None = None,
    ) -> None:
        """``config_file`` is the file the file source reads; ``dsn`` the PostgreSQL DSN
        (the embedded server's when ``storage.dsn`` is empty); ``source`` replaces both."""
        self._config = config
        self.source = source or open_source(config, config_file=config_file, dsn=dsn)
        self.metrics = LiveMetrics(registry)
        self._values: dict[str, Value] = {}
        # The last rejected raw value per key, so that a periodic refresh of the same bad
        # value is not logged and counted again.
        self._rejected: dict[str, object] = {}
        self._snapshot = LiveSnapshot.build({}, config)
        self._subscribers: list[Subscriber] = []
        self._answered = asyncio.Event()
        self._up = False
        self._watch: asyncio.Task[None] | None = None

    @property
    def snapshot(self) -> LiveSnapshot:
        """The values in force now."""
        return self._snapshot

    @property
    def source_up(self) -> bool:
        """Whether the source answered its last read."""
        return self._up

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(snapshot)`` after every change of the values in force (on the
        event loop; it must not block). Returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def start(self) -> None:
        """Start following the source; return once it answered (or failed to) the first
        time, at most ``START_WAIT_SECONDS`` later. Never fails for an unreachable source:
        the static values stay in force until it answers."""
        events = SourceEvents(refreshed=self._refreshed, changed=self._changed, lost=self._lost)
        self._watch = asyncio.create_task(
            self.source.watch(events, self._config.live.refresh_seconds),
            name="tidegate-live-settings",
        )
        self._watch.add_done_callback(_log_failure)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._answered.wait(), START_WAIT_SECONDS)
        if not self._answered.is_set():
            log.warning("live settings: the %s source has not answered yet", self.source.name)

    async def stop(self) -> None:
        """Stop following the source."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def reload(self) -> bool:
        """Read everything again now (the daemon's SIGHUP); False when the source failed,
        in which case the values in force stay."""
        try:
            values = await self.source.read_all()
        except (ConfigError, LiveSourceError) as exc:
            self._lost(str(exc))
            return False
        self._refreshed(values)
        return True

    def _refreshed(self, raw: Mapping[str, object]) -> None:
        self.metrics.reloads.labels("ok").inc()
        self._set_up(True)
        self._answered.set()
        values: dict[str, Value] = {}
        for key, value in raw.items():
            accepted = self._validated(key, value)
            if accepted is not None:
                values[key] = accepted
        self._rejected = {k: v for k, v in self._rejected.items() if k in raw}
        self._publish(values)

    def _set_up(self, up: bool) -> None:
        self._up = up
        self.metrics.source_up.set(1 if up else 0)

    def _changed(self, key: str, raw: object | None) -> None:
        self._set_up(True)
        values = dict(self._values)
        if raw is None:
            values.pop(key, None)
            self._rejected.pop(key, None)
        elif (accepted := self._validated(key, raw)) is not None:
            values[key] = accepted
        self._publish(values)

    def _lost(self, why: str) -> None:
        # One warning when the source goes away; the retries while it stays away are debug.
        level = logging.WARNING if self._up or not self._answered.is_set() else logging.DEBUG
        self.metrics.reloads.labels("failed").inc()
        self._set_up(False)
        self._answered.set()
        log.log(level, "live settings: cannot read the %s source, the values in force stay: %s",
                self.source.name, why)  # fmt: skip

    def _validated(self, key: str, raw: object) -> Value | None:
        """The value to keep for ``key``: ``raw`` when valid, else the previous valid value."""
        try:
            value = parse_value(key, raw)
        except ConfigError as exc:
            previous = self._values.get(key)
            if key not in self._rejected or self._rejected[key] != raw:
                self._rejected[key] = raw
                self.metrics.rejected.labels(rejection_label(key)).inc()
                kept = "keeping the previous value" if previous is not None else "it stays unset"
                log.warning("live settings: rejected %s; %s", exc, kept)
            return previous
        self._rejected.pop(key, None)
        return value

    def _publish(self, values: dict[str, Value]) -> None:
        if values == self._values:
            return
        changed = sorted(k for k in values.keys() | self._values.keys()
                         if values.get(k) != self._values.get(k))  # fmt: skip
        self._values = values
        self._snapshot = LiveSnapshot.build(values, self._config)
        self.metrics.last_change.set_to_current_time()
        log.info("live settings changed: %s", ", ".join(changed))
        for callback in list(self._subscribers):
            try:
                callback(self._snapshot)
            # A subscriber's bug must not keep the change from the others.
            except Exception:
                log.exception("live settings: a subscriber failed on the change")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("live settings: stopped following the source", exc_info=task.exception())
