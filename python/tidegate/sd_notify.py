"""systemd's service notification protocol, without libsystemd.

Under a ``Type=notify`` unit systemd passes a unix datagram socket in ``$NOTIFY_SOCKET`` (a
leading ``@`` means the abstract namespace); each datagram is newline-separated
``KEY=VALUE`` pairs (``READY=1``, ``STATUS=...``, ``STOPPING=1``, ``WATCHDOG=1``). Outside
systemd the variable is unset and every call here is a no-op, so ``tidegate serve`` behaves
the same in a terminal, a container or a test.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# A full receive queue in systemd must not stall the event loop for long; past this the
# message is dropped (and logged), which for WATCHDOG=1 the next ping makes up for.
SEND_TIMEOUT_SECONDS = 1.0


def notify(message: str) -> bool:
    """Send ``message`` to systemd; False when ``$NOTIFY_SOCKET`` is unset or the send fails."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        # systemd 254+ may also pass vsock: addresses (VMs); tidegate does not speak those.
        log.warning("NOTIFY_SOCKET %r is not a unix socket path; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_SECONDS)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", message.partition("\n")[0], exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled
    advises), or None when systemd asks for none or asks another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


async def run_watchdog(interval: float, healthy: Callable[[], bool]) -> None:
    """Ping systemd's watchdog every ``interval`` seconds while ``healthy()``; runs until
    cancelled. The pings come from the event loop itself, so a wedged loop also stops them
    and systemd restarts the service."""
    while True:
        if healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(interval)
