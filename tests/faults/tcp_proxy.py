"""A TCP proxy on 127.0.0.1 that injects network faults between the daemon and a server.

Pass-through by default. Any time: :meth:`TcpFaultProxy.cut_all` drops every connection,
:meth:`TcpFaultProxy.refuse` stops listening (clients get "connection refused") until
:meth:`TcpFaultProxy.accept`. With ``postgres=True`` the proxy follows the PostgreSQL protocol
(:mod:`tests.faults.pg_wire`) and can fire one-shot faults at a message:

* ``Trigger.COMMIT``: the ``COMMIT`` of a transaction (a simple ``Query``, or ``Parse`` through
  ``Sync`` of the extended protocol) whose statements contain ``match``;
* ``Trigger.COPY_DONE``: the ``CopyDone`` ending a ``COPY`` whose statement contains ``match``;

with one of two actions:

* ``Action.FORWARD_THEN_CUT``: forward the message, drop every byte the server answers up to
  its ``ReadyForQuery``, then close both sides: the server did the work, the client never hears;
* ``Action.HOLD``: do not forward it; the connection stalls (the client waits for an answer)
  until :meth:`TcpFaultProxy.release_held`, which closes it, or until the server goes away.

``asyncpg`` (the daemon's driver) never pipelines inside a transaction, so the bytes after a
forwarded ``COMMIT`` are that ``COMMIT``'s answer.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.faults.pg_faults import Action, ArmedFault, TransactionTracker, Trigger
from tests.faults.pg_wire import (
    READY_FOR_QUERY,
    Message,
    MessageSplitter,
    is_encryption_request,
)

T = TypeVar("T")
CHUNK = 65536
CALL_TIMEOUT_SECONDS = 10.0
# A server that never finishes answering a forwarded COMMIT is cut anyway after this long.
REPLY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Upstream:
    """Where the proxy connects: a TCP address or a Unix socket path."""

    host: str = ""
    port: int = 0
    unix_path: str = ""

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_path:
            return await asyncio.open_unix_connection(self.unix_path)
        return await asyncio.open_connection(self.host, self.port)


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    """One proxied connection and what the proxy knows about its protocol state."""

    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    server_reader: asyncio.StreamReader
    server_writer: asyncio.StreamWriter
    client_split: MessageSplitter = field(default_factory=lambda: MessageSplitter(client=True))
    server_split: MessageSplitter = field(default_factory=lambda: MessageSplitter(client=False))
    transaction: TransactionTracker = field(default_factory=TransactionTracker)
    dropping_replies: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        for writer in (self.client_writer, self.server_writer):
            writer.transport.abort()
        self.closed.set()
        self.released.set()


class TcpFaultProxy:
    """Listens on ``127.0.0.1:<port>`` (a free port unless given) and forwards to ``upstream``.

    Runs its own event loop in a thread; every method may be called from any thread. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, upstream: Upstream, *, postgres: bool = False, port: int = 0) -> None:
        self._upstream = upstream
        self._postgres = postgres
        self.port = port
        self._links: set[_Link] = set()
        self._armed: list[ArmedFault] = []
        self._lock = threading.Lock()
        #: How many times each fault fired, by ``"<trigger>/<action>"``, plus ``"cut_all"``.
        self.fired: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TcpFaultProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def set_upstream(self, upstream: Upstream) -> None:
        """New connections go to ``upstream`` (a restarted server's new socket)."""
        self._upstream = upstream

    def arm(self, trigger: Trigger, action: Action, match: str | None = None) -> ArmedFault:
        """Arm a one-shot fault (PostgreSQL mode only); it fires at the next matching message."""
        if not self._postgres:
            raise ValueError("message faults need a proxy created with postgres=True")
        fault = ArmedFault(trigger, action, match)
        with self._lock:
            self._armed.append(fault)
        return fault

    def arm_cut_after_commit(self, match: str | None = None) -> ArmedFault:
        return self.arm(Trigger.COMMIT, Action.FORWARD_THEN_CUT, match)

    def arm_hold_commit(self, match: str | None = None) -> ArmedFault:
        return self.arm(Trigger.COMMIT, Action.HOLD, match)

    def arm_hold_copy(self, match: str | None = None) -> ArmedFault:
        return self.arm(Trigger.COPY_DONE, Action.HOLD, match)

    def disarm(self) -> None:
        with self._lock:
            self._armed.clear()

    def release_held(self) -> None:
        """Close every held connection."""
        self._call(self._release())

    def cut_all(self) -> int:
        """Drop every open connection now; returns how many."""
        return self._call(self._cut_all())

    def refuse(self) -> None:
        """Stop listening and drop every connection: the server looks unreachable."""
        self._call(self._refuse())

    def accept(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self._refuse())
        finally:
            self._stop_loop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_SECONDS)

    def _stop_loop(self) -> None:
        async def cancel_tasks() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_tasks(), self._loop).result(
                CALL_TIMEOUT_SECONDS
            )
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT_SECONDS)
        self._loop.close()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._cut_all()

    async def _cut_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self.fired["cut_all"] += 1
        return len(links)

    async def _release(self) -> None:
        for link in list(self._links):
            link.released.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await self._upstream.open()
        except OSError:
            writer.transport.abort()  # upstream down: the client sees its connection dropped
            return
        link = _Link(reader, writer, server_reader, server_writer)
        self._links.add(link)
        pumps = [
            asyncio.ensure_future(self._pump_client(link)),
            asyncio.ensure_future(self._pump_server(link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.abort()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._links.discard(link)

    async def _pump_client(self, link: _Link) -> None:
        while data := await _read(link.client_reader):
            if not self._postgres or link.client_split.opaque:
                link.server_writer.write(data)
                await link.server_writer.drain()
                continue
            out = bytearray()
            for message in link.client_split.feed(data):
                if is_encryption_request(message):
                    link.server_split.expect_single_byte()
                fault = self._fault_at(link, message)
                if fault is None:
                    out += message.raw
                    continue
                if fault.action is Action.FORWARD_THEN_CUT:
                    out += message.raw
                    link.dropping_replies = True
                link.server_writer.write(bytes(out))
                await link.server_writer.drain()
                fault.fired.set()
                if fault.action is Action.HOLD:
                    await link.released.wait()
                else:
                    await link.closed.wait()
                return
            link.server_writer.write(bytes(out))
            await link.server_writer.drain()

    async def _pump_server(self, link: _Link) -> None:
        while True:
            if link.dropping_replies:
                try:
                    data = await asyncio.wait_for(
                        _read(link.server_reader), timeout=REPLY_TIMEOUT_SECONDS
                    )
                except TimeoutError:
                    return
            else:
                data = await _read(link.server_reader)
            if not data:
                return
            if not self._postgres or link.server_split.opaque:
                link.client_writer.write(data)
                await link.client_writer.drain()
                continue
            messages = link.server_split.feed(data)
            if link.dropping_replies:
                if any(m.kind == READY_FOR_QUERY for m in messages):
                    return  # the COMMIT is done and its answer dropped: cut both sides
                continue
            link.client_writer.write(data)
            await link.client_writer.drain()

    def _fault_at(self, link: _Link, message: Message) -> ArmedFault | None:
        """The armed fault that fires at ``message``, disarmed and counted."""
        boundary = link.transaction.boundary(message)
        if boundary is None:
            return None
        with self._lock:
            for fault in self._armed:
                if fault.applies(boundary):
                    self._armed.remove(fault)
                    fault.statements = boundary.statements
                    self.fired[f"{boundary.trigger.value}/{fault.action.value}"] += 1
                    return fault
        return None


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(CHUNK)
    except OSError:
        return b""
