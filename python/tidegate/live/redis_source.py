"""Live settings in Redis: one string key ``<prefix><key>`` per setting; each write also
publishes the setting's key on the channel ``<prefix>changes``.

redis-py's own retries are turned off: a connection that silently came back would have
missed the messages published meanwhile, so every reconnect here is followed by a full read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tidegate.errors import LiveSourceError
from tidegate.live.sources import Backoff, SourceEvents, reason

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (OSError, RedisError)
# Commands other than the subscription's blocking read give up after this long.
COMMAND_TIMEOUT_SECONDS = 5.0
SCAN_BATCH = 500


class RedisSource:
    """The settings under one key prefix of one Redis database."""

    name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = prefix
        self.channel = f"{prefix}changes"

    def _client(self) -> redis.asyncio.Redis:
        return redis.asyncio.Redis.from_url(
            self._url,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            socket_connect_timeout=COMMAND_TIMEOUT_SECONDS,
        )

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[redis.asyncio.Redis]:
        client = self._client()
        try:
            yield client
        except CONNECTION_ERRORS as exc:
            raise LiveSourceError(f"Redis: {reason(exc)}") from exc
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await client.aclose()

    async def read_all(self) -> dict[str, object]:
        async with self._connected() as client:
            return await self._read_all(client)

    async def read(self, key: str) -> object | None:
        async with self._connected() as client:
            return await self._read(client, key)

    async def set(self, key: str, value: str) -> None:
        async with self._connected() as client, client.pipeline(transaction=True) as pipe:
            pipe.set(self._prefix + key, value)
            pipe.publish(self.channel, key)
            await pipe.execute()

    async def unset(self, key: str) -> None:
        async with self._connected() as client, client.pipeline(transaction=True) as pipe:
            pipe.delete(self._prefix + key)
            pipe.publish(self.channel, key)
            await pipe.execute()

    async def _read(self, client: redis.asyncio.Redis, key: str) -> object | None:
        # MGET, not GET: a key of another type (a hash, a list) reads as unset instead of
        # failing with WRONGTYPE, as it does in a full read.
        values: Sequence[object | None] = await client.mget([self._prefix + key])
        return values[0]

    async def _read_all(self, client: redis.asyncio.Redis) -> dict[str, object]:
        # The prefix is literal text; SCAN's MATCH is a glob, so its special characters are
        # escaped.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix) + "*"
        names = [name async for name in client.scan_iter(match=pattern, count=SCAN_BATCH)]
        if not names:
            return {}
        values = await client.mget(names)
        # A key deleted between SCAN and MGET reads as None: it is unset.
        return {
            name.removeprefix(self._prefix): value
            for name, value in zip(names, values, strict=True)
            if value is not None
        }

    async def watch(self, events: SourceEvents, refresh_seconds: float) -> None:
        backoff = Backoff()
        while True:
            try:
                async with self._connected() as client:
                    await self._subscribe(client, events, refresh_seconds, backoff)
            except LiveSourceError as exc:
                events.lost(str(exc))
            delay = backoff.next_delay()
            log.debug("live settings: reconnecting to Redis in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _subscribe(
        self,
        client: redis.asyncio.Redis,
        events: SourceEvents,
        refresh_seconds: float,
        backoff: Backoff,
    ) -> None:
        """Follow the channel until the connection drops."""
        loop = asyncio.get_running_loop()
        async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self.channel)
            # Subscribed before reading: a change in between is both read and published.
            events.refreshed(await self._read_all(client))
            backoff.reset()
            next_refresh = loop.time() + refresh_seconds
            while True:
                wait = max(0.0, next_refresh - loop.time())
                message = await pubsub.get_message(timeout=wait)
                if message is not None and message.get("type") == "message":
                    key = str(message["data"])
                    events.changed(key, await self._read(client, key))
                elif loop.time() >= next_refresh:
                    events.refreshed(await self._read_all(client))
                    next_refresh = loop.time() + refresh_seconds
