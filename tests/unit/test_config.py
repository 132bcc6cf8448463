"""Configuration: defaults, TOML files, environment, flags, and rejection by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidegate.config import Config, load
from tidegate.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "data" / "config"


def test_defaults_are_valid_and_local() -> None:
    config = load(environ={})
    assert config == Config()
    assert config.grpc.listen == "127.0.0.1:4317"
    assert config.http.listen == "127.0.0.1:9464"
    assert config.grpc.max_message_bytes == 16 * 1024 * 1024
    assert config.storage.dsn == ""
    assert config.data_dir == "./tidegate-data"


def test_full_file_sets_every_section() -> None:
    config = load(CONFIGS / "full.toml", environ={})
    assert config.grpc.listen == "0.0.0.0:14317"
    assert config.grpc.max_message_bytes == 8388608
    assert config.storage.connect_timeout_seconds == 5.0
    assert config.storage.timescale == "off"
    assert config.ingest.flush_interval_seconds == 0.5
    assert config.ingest.retry_after_seconds == 2.0
    assert config.ingest.max_in_flight_bytes == 128 * 1024 * 1024
    assert config.ingest.decode_thread_niceness == 3
    assert config.shutdown_timeout_seconds == 10.0
    assert config.log_level == "warning"
    assert config.rollups.window_seconds == 30
    assert config.rollups.lateness_seconds == 120
    assert config.rollups.compression == 200.0
    assert config.rollups.hour_flush_seconds == 600
    assert config.grpc.shutdown_grace_seconds == 3.0
    assert (config.spool.durability, config.spool.directory) == ("memory", "/var/spool/tidegate")
    assert (config.spool.max_bytes, config.spool.segment_bytes) == (1 << 30, 16 << 20)
    assert config.spool.dedup_horizon_seconds == 300.0
    assert config.traces.store == "s3://tidegate-traces/prod"
    assert config.traces.block_max_age_seconds == 2.5
    assert config.traces.zstd_level == 5
    assert config.s3.endpoint_url == "http://minio:9000"
    assert config.retention.traces_days == 14
    assert config.trace_store_url() == "s3://tidegate-traces/prod"
    assert config.grpc.tls_client_ca_file == "/etc/tidegate/tls/clients-ca.crt"
    assert config.auth.required is True
    assert (config.live.source, config.live.redis_url) == ("redis", "redis://cache:6379/2")
    assert (config.live.redis_prefix, config.live.refresh_seconds) == ("tg:", 30.0)


def test_tls_key_without_certificate_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be set together"):
        load(environ={"TIDEGATE_GRPC_TLS_KEY_FILE": "/etc/key.pem"})


def test_unknown_live_source_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"live\.source must be file, postgres or redis"):
        load(environ={"TIDEGATE_LIVE_SOURCE": "etcd"})


def test_default_trace_store_is_under_the_data_directory(tmp_path: Path) -> None:
    config = load(environ={"TIDEGATE_DATA_DIR": str(tmp_path)})
    assert config.trace_store_url() == (tmp_path / "traces").as_uri()


def test_ten_second_windows() -> None:
    config = load(CONFIGS / "ten_second_windows.toml", environ={})
    assert (config.rollups.window_seconds, config.rollups.lateness_seconds) == (10, 30)


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("unknown_key.toml", "unknown configuration key ingest.flush_intervall_seconds"),
        ("unknown_section.toml", "unknown configuration key storages"),
        ("wrong_type.toml", "grpc.max_message_bytes must be int"),
        ("bad_trace_store.toml", "traces.store must be file:///path or s3://bucket/prefix"),
    ],
)
def test_bad_files_are_rejected_by_name(file: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(CONFIGS / file, environ={})


def test_environment_overrides_file_and_flags_override_environment() -> None:
    environ = {
        "TIDEGATE_DSN": "postgresql://env/db",
        "TIDEGATE_INGEST_FLUSH_POINTS": "1234",
        "TIDEGATE_REQUIRE_ALL": "1",  # read by the tests, not configuration
    }
    config = load(CONFIGS / "full.toml", environ=environ, overrides={"grpc.listen": "127.0.0.1:0"})
    assert config.storage.dsn == "postgresql://env/db"
    assert config.ingest.flush_points == 1234
    assert config.grpc.listen == "127.0.0.1:0"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"TIDEGATE_INGEST_FLUSH_POINTZ": "1"},
            "unknown environment variable TIDEGATE_INGEST_FLUSH_POINTZ",
        ),
        ({"TIDEGATE_INGEST_FLUSH_POINTS": "many"}, "ingest.flush_points must be int"),
        ({"TIDEGATE_GRPC_LISTEN": "4317"}, "grpc.listen must be host:port"),
        ({"TIDEGATE_INGEST_DECODE_THREADS": "0"}, "ingest.decode_threads must be a finite"),
        ({"TIDEGATE_INGEST_DECODE_THREAD_NICENESS": "20"}, "decode_thread_niceness must be betw"),
        ({"TIDEGATE_INGEST_DECODE_THREAD_NICENESS": "-1"}, "decode_thread_niceness must be betw"),
        ({"TIDEGATE_INGEST_RETRY_AFTER_SECONDS": "inf"}, "ingest.retry_after_seconds must be a"),
        ({"TIDEGATE_INGEST_FLUSH_INTERVAL_SECONDS": "nan"}, "flush_interval_seconds must be a"),
        (
            {"TIDEGATE_DSN": "postgresql://a/b", "TIDEGATE_STORAGE_DSN": "postgresql://c/d"},
            "set TIDEGATE_DSN or TIDEGATE_STORAGE_DSN, not both",
        ),
        ({"TIDEGATE_LOG_LEVEL": "loud"}, "log_level must be"),
        ({"TIDEGATE_ROLLUPS_WINDOW_SECONDS": "7"}, "rollups.window_seconds must divide 3600"),
        ({"TIDEGATE_SPOOL_DURABILITY": "paper"}, "spool.durability must be fsync or memory"),
        ({"TIDEGATE_STORAGE_TIMESCALE": "on"}, "storage.timescale must be auto or off"),
        ({"TIDEGATE_SPOOL_SEGMENT_BYTES": "1000"}, "spool.segment_bytes must be at least 65536"),
        ({"TIDEGATE_SPOOL_MAX_BYTES": "70000"}, "spool.max_bytes must be at least spool.segment"),
        (
            {"TIDEGATE_ROLLUPS_HOUR_FLUSH_SECONDS": "10"},
            "rollups.hour_flush_seconds must be at least rollups.window_seconds",
        ),
        ({"TIDEGATE_ROLLUPS_WINDOW_SECONDS": "0"}, "rollups.window_seconds must be a finite"),
        ({"TIDEGATE_ROLLUPS_LATENESS_SECONDS": "-1"}, "lateness_seconds must not be negative"),
        ({"TIDEGATE_ROLLUPS_COMPRESSION": "5"}, "compression must be between 10 and 10000"),
        ({"TIDEGATE_TRACES_DICTIONARY_BYTES": "-1"}, "dictionary_bytes must be between 0 and"),
        (
            {"TIDEGATE_INGEST_FLUSH_POINTS": "5000000"},
            "flush_points must not exceed ingest.max_buffered_points",
        ),
    ],
)
def test_bad_environment_is_rejected_by_name(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(environ=environ)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "absent.toml", environ={})
