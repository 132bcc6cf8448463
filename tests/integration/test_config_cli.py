"""`tidegate config` against real PostgreSQL and Redis: set, get, unset and list change and
show the stored values; invalid input exits 2 with nothing written; an unreachable source
exits 1; `watch` prints each change as it arrives."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.redis_server import RedisServer, running_redis_server
from tidegate import config_cli, schema

PREFIX = "tidegate:config:"
# The `tidegate` command's parser, reduced to the subcommand under test (cli.py wires it).
PROGRAM = (
    "import argparse, sys\n"
    "from tidegate import config_cli\n"
    "parser = argparse.ArgumentParser(prog='tidegate')\n"
    "config_cli.add_parser(parser.add_subparsers(dest='command'))\n"
    "sys.exit(config_cli.run(parser.parse_args(sys.argv[1:])))\n"
)


def tidegate_config(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``tidegate config ARGV`` in this process: (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="tidegate")
    config_cli.add_parser(parser.add_subparsers(dest="command"))
    code = config_cli.run(parser.parse_args(["config", *argv]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def postgres_toml(database_dsn: str, tmp_path: Path) -> Path:
    async def migrate() -> None:
        conn = await asyncpg.connect(database_dsn)
        try:
            await schema.apply(conn)
        finally:
            await conn.close()

    asyncio.run(migrate())
    path = tmp_path / "postgres.toml"
    path.write_text(f'[storage]\ndsn = "{database_dsn}"\n\n[live]\nsource = "postgres"\n')
    return path


def stored_rows(dsn: str) -> dict[str, str]:
    async def fetch() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            return {r["key"]: r["value"] for r in await conn.fetch("TABLE tidegate_config")}
        finally:
            await conn.close()

    return asyncio.run(fetch())


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server


@pytest.fixture
def redis_toml(redis_server: RedisServer, tmp_path: Path) -> Path:
    path = tmp_path / "redis.toml"
    path.write_text(f'[live]\nsource = "redis"\nredis_url = "{redis_server.url}"\n')
    return path


def stored_keys(server: RedisServer) -> dict[str, str]:
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        names = sorted(client.scan_iter(match=PREFIX + "*"))
        return {name.removeprefix(PREFIX): client.get(name) for name in names}


def test_postgres_set_get_list_unset(
    postgres_toml: Path, database_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ("--config", str(postgres_toml))
    assert tidegate_config(capsys, "set", "limits.acme.points_per_second", "5000", *config) == (
        0, "", "",
    )  # fmt: skip
    assert tidegate_config(capsys, "set", "sampling.checkout.api.ratio", " 0.5 ", *config)[0] == 0
    assert stored_rows(database_dsn) == {
        "limits.acme.points_per_second": "5000",
        "sampling.checkout.api.ratio": "0.5",
    }
    assert tidegate_config(capsys, "get", "limits.acme.points_per_second", *config) == (
        0, "5000\n", "",
    )  # fmt: skip
    assert tidegate_config(capsys, "list", *config) == (
        0, "limits.acme.points_per_second = 5000\nsampling.checkout.api.ratio = 0.5\n", "",
    )  # fmt: skip
    assert tidegate_config(capsys, "unset", "limits.acme.points_per_second", *config)[0] == 0
    assert stored_rows(database_dsn) == {"sampling.checkout.api.ratio": "0.5"}
    code, out, err = tidegate_config(capsys, "get", "limits.acme.points_per_second", *config)
    assert (code, out) == (0, "")
    assert "limits.acme.points_per_second is not set; its default applies" in err


def test_postgres_invalid_input_writes_nothing(
    postgres_toml: Path, database_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ("--config", str(postgres_toml))
    code, out, err = tidegate_config(capsys, "set", "rollups.window_seconds", "7", *config)
    assert (code, out) == (2, "")
    assert "rollups.window_seconds must be a whole number of seconds dividing 3600, got 7" in err
    code, _, err = tidegate_config(capsys, "set", "limits.Acme.points_per_second", "1", *config)
    assert code == 2
    assert "tenant 'Acme' must be * or match" in err
    code, _, err = tidegate_config(capsys, "unset", "limit.acme.points_per_second", *config)
    assert code == 2
    assert "unknown live setting 'limit.acme.points_per_second'" in err
    assert stored_rows(database_dsn) == {}


def test_postgres_needs_a_dsn_when_storage_is_embedded(
    database_dsn: str, postgres_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded = tmp_path / "embedded.toml"
    embedded.write_text('[live]\nsource = "postgres"\n')
    code, _, err = tidegate_config(capsys, "list", "--config", str(embedded))
    assert code == 2
    assert "storage.dsn is empty" in err
    assert "pass --dsn" in err
    argv = ("set", "log_level", "debug", "--config", str(embedded), "--dsn", database_dsn)
    assert tidegate_config(capsys, *argv)[0] == 0
    assert stored_rows(database_dsn) == {"log_level": "debug"}


def test_list_shows_stored_values_daemons_ignore(
    postgres_toml: Path, database_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def store() -> None:
        conn = await asyncpg.connect(database_dsn)
        try:
            await conn.execute("INSERT INTO tidegate_config VALUES ('log_level', 'loud')")
        finally:
            await conn.close()

    asyncio.run(store())
    code, out, err = tidegate_config(capsys, "list", "--config", str(postgres_toml))
    assert (code, out) == (0, "log_level = loud\n")
    assert "daemons ignore this value: log_level must be one of" in err


def test_redis_set_get_list_unset(
    redis_toml: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ("--config", str(redis_toml))
    assert tidegate_config(capsys, "set", "cardinality.*.max_active_series", "100", *config)[0] == 0
    assert tidegate_config(capsys, "set", "log_level", "WARNING", *config)[0] == 0
    assert stored_keys(redis_server) == {
        "cardinality.*.max_active_series": "100",
        "log_level": "WARNING",
    }
    assert tidegate_config(capsys, "get", "log_level", *config) == (0, "WARNING\n", "")
    assert tidegate_config(capsys, "list", *config) == (
        0, "cardinality.*.max_active_series = 100\nlog_level = WARNING\n", "",
    )  # fmt: skip
    code, _, err = tidegate_config(capsys, "set", "log_level", "loud", *config)
    assert code == 2
    assert "log_level must be one of debug, info, warning, error, got 'loud'" in err
    assert tidegate_config(capsys, "unset", "log_level", *config)[0] == 0
    assert stored_keys(redis_server) == {"cardinality.*.max_active_series": "100"}


def test_unreachable_redis_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "redis.toml"
    path.write_text('[live]\nsource = "redis"\nredis_url = "redis://127.0.0.1:1/0"\n')
    code, out, err = tidegate_config(capsys, "set", "log_level", "info", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith("tidegate: Redis: ConnectionError")


def test_file_source_is_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file.toml"
    path.write_text('[live.settings.limits."*"]\nspans_per_second = 1000\n')
    config = ("--config", str(path))
    assert tidegate_config(capsys, "list", *config) == (
        0, "limits.*.spans_per_second = 1000\n", "",
    )  # fmt: skip
    code, _, err = tidegate_config(capsys, "set", "log_level", "info", *config)
    assert code == 2
    assert "edit the [live.settings] table of the config file, then send SIGHUP" in err
    assert path.read_text() == '[live.settings.limits."*"]\nspans_per_second = 1000\n'
    code, _, err = tidegate_config(capsys, "list")
    assert code == 2
    assert "pass --config FILE" in err


def watch(config: Path, count: int) -> subprocess.Popen[str]:
    """``tidegate config watch`` in a subprocess, returned once it is following the source."""
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, "config", "watch", "--count", str(count),
         "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline()
    assert line.startswith("watching the "), line + process.stderr.read()
    return process


@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_watch_prints_each_change(
    store: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    toml: Path = request.getfixturevalue(f"{store}_toml")
    config = ("--config", str(toml))
    assert tidegate_config(capsys, "set", "retention.traces_days", "3", *config)[0] == 0
    process = watch(toml, count=3)
    try:
        start = time.monotonic()
        assert (
            tidegate_config(capsys, "set", "limits.acme.spans_per_second", "250", *config)[0] == 0
        )
        assert tidegate_config(capsys, "set", "retention.traces_days", "oops", *config)[0] == 2
        assert tidegate_config(capsys, "set", "log_level", "error", *config)[0] == 0
        assert tidegate_config(capsys, "unset", "retention.traces_days", *config)[0] == 0
        out, err = process.communicate(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    assert out == (
        "limits.acme.spans_per_second = 250.0\nlog_level = error\nretention.traces_days unset\n"
    )
    assert elapsed < 5
