"""Static configuration: one place for every default, loaded from TOML, environment and flags.

Precedence, lowest first: the defaults below, the TOML file, ``TIDEGATE_<SECTION>_<KEY>``
environment variables, command-line flags. Unknown keys are rejected by name wherever they come
from, so a typo never silently leaves a default in force.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidegate.errors import ConfigError

MIB = 1024 * 1024
# The tenant of requests that carry no API key (when keys are not required), and of every row
# stored before tenants existed.
DEFAULT_TENANT = "default"
# What a tenant name may be (API keys, live settings, metric labels): 1 to 63 of a-z, 0-9, '_'
# and '-', starting with a letter or digit. Match with fullmatch.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

# Environment variables with this prefix are configuration, except these, which the test
# suite and CI read themselves.
ENV_PREFIX = "TIDEGATE_"
ENV_NOT_CONFIG = ("TIDEGATE_REQUIRE_ALL", "TIDEGATE_TEST_")
# Short spellings for the settings people set most.
ENV_ALIASES = {"TIDEGATE_DSN": "storage.dsn", "TIDEGATE_DATA_DIR": "data_dir"}


@dataclass
class GrpcConfig:
    """The OTLP/gRPC listener."""

    listen: str = "127.0.0.1:4317"  # loopback by default: exposing it is a deliberate choice
    max_message_bytes: int = 16 * MIB  # the OTLP exporters' own default batch stays far below
    # Export calls decoded at once; beyond it clients get UNAVAILABLE with RetryInfo. grpc
    # itself refuses calls beyond four times this (RESOURCE_EXHAUSTED, no RetryInfo) as a
    # last bound on memory.
    max_concurrent_rpcs: int = 256
    # At shutdown, calls in flight get this long to finish; later ones get UNAVAILABLE.
    shutdown_grace_seconds: float = 5.0
    # TLS: a PEM certificate chain and its key; both empty means plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Mutual TLS: clients must present a certificate signed by one of these CAs (PEM).
    tls_client_ca_file: str = ""


@dataclass
class HttpConfig:
    """The HTTP listener for /metrics, /healthz and /readyz."""

    listen: str = "127.0.0.1:9464"  # 9464 is the port OpenTelemetry uses for Prometheus scrapes


@dataclass
class AuthConfig:
    """API keys (docs/architecture.md, "Tenants"). A request that presents a key must present
    a valid one; one without a key writes to the tenant `default` unless keys are required."""

    required: bool = False


@dataclass
class LiveConfig:
    """Where the settings that change without a restart come from (docs/live-config.md)."""

    # "file": the `[live.settings]` table of the config file, re-read on SIGHUP;
    # "postgres": the `tidegate_config` table, changes pushed by LISTEN/NOTIFY;
    # "redis": keys `<redis_prefix><key>`, changes pushed on the channel `<redis_prefix>changes`.
    source: str = "file"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tidegate:config:"
    # A full re-read this often covers missed notifications and reconnects.
    refresh_seconds: float = 60.0


@dataclass
class StorageConfig:
    """Where metrics go. An empty DSN starts the embedded PostgreSQL in the data directory."""

    dsn: str = ""
    connect_timeout_seconds: float = 30.0
    # "auto": when the timescaledb extension can be created, the day-partitioned tables become
    # hypertables with retention and compression policies (docs/timescaledb.md); "off": never.
    timescale: str = "auto"


@dataclass
class IngestConfig:
    """Admission limits and buffering between the receiver and PostgreSQL."""

    max_attributes: int = 128
    max_attribute_value_bytes: int = 4096
    max_name_bytes: int = 1024
    # Points older than the metrics retention would be dropped by retention anyway.
    max_past_seconds: int = 30 * 86400
    # Clock skew allowance for clients whose clocks run ahead.
    max_future_seconds: int = 3600
    # A flush turns everything buffered into one COPY batch; a longer interval means wider
    # chunks (fewer rows per point) at the price of more unflushed data held in memory.
    flush_interval_seconds: float = 1.0
    # Flush early once this many points are buffered, to bound memory under load.
    flush_points: int = 500_000
    # Above this many unwritten points, Export answers UNAVAILABLE with RetryInfo.
    max_buffered_points: int = 4_000_000
    # Request bytes held by calls being decoded; beyond it (a lone request always passes)
    # clients get UNAVAILABLE with RetryInfo, so concurrent large requests cannot pile up.
    max_in_flight_bytes: int = 256 * MIB
    # Threads that run the Rust decoder with the GIL released.
    decode_threads: int = 2
    # How much nicer (lower in CPU priority) the decode threads are than the rest of the
    # daemon, so that they do not preempt the event loop, which serves every call; 0 keeps
    # them level. Linux only (elsewhere the threads keep the daemon's priority).
    decode_thread_niceness: int = 5
    retry_after_seconds: float = 1.0


@dataclass
class RollupsConfig:
    """Windowed aggregation of every accepted point (docs/architecture.md, "Rollups")."""

    # Window length; must divide an hour, because hour rollups are built from windows.
    window_seconds: int = 60
    # A window stays open this long after its end for late points; later ones still count,
    # in another partial row for the same window.
    lateness_seconds: int = 60
    # t-digest compression: about this many centroids per digest; 100 meets the accuracy
    # targets in tests/ with rows of about 1.5 KB.
    compression: float = 100.0
    # Every open hour is also written (as a partial row) this often, so that the spool need
    # not keep an hour of requests to rebuild open hours after a crash.
    hour_flush_seconds: int = 300


@dataclass
class SpoolConfig:
    """The on-disk spool every accepted request is written to before it is acknowledged
    (docs/architecture.md, "Spool")."""

    # "fsync": acknowledged means fsynced (group commit). "memory": acknowledged once decoded
    # into memory; faster, but a crash loses what was not yet stored.
    durability: str = "fsync"
    # Empty means `<data_dir>/spool`.
    directory: str = ""
    # Beyond this many bytes of unstored requests, Export answers UNAVAILABLE with RetryInfo.
    max_bytes: int = 4 * 1024 * MIB
    segment_bytes: int = 64 * MIB
    # A request identical to one accepted this recently is acknowledged without storing it.
    dedup_horizon_seconds: float = 600.0


@dataclass
class TracesConfig:
    """Where and how spans are stored as blocks (docs/architecture.md, "Traces")."""

    # `file:///path` or `s3://bucket/prefix`; empty means `<data_dir>/traces` on local disk.
    store: str = ""
    # A block is cut when the spans waiting for it reach this many bytes (before compression,
    # so stored blocks are smaller) or when the oldest has waited `block_max_age_seconds`.
    block_max_bytes: int = 8 * MIB
    block_max_age_seconds: float = 5.0
    # Above this many spans accepted and not yet indexed, Export answers UNAVAILABLE. A
    # waiting span holds about 500 bytes (its trace's fragment), so this bounds ~500 MB.
    max_buffered_spans: int = 1_000_000
    # zstd level per frame: 3 is zstd's default, a good ratio at a few hundred MB/s; 5
    # stores ~8 % fewer bytes per span for about a third of the trace throughput on two
    # cores (bench/RESULTS.md, "Traces").
    zstd_level: int = 3
    # The frames of a block share a dictionary of up to this many bytes of content (whole
    # traces sampled across the block, at most an eighth of it) after entropy tables drawn
    # from other traces of the block, kept in the block's `trace_blocks` row; 0 compresses
    # every frame alone.
    dictionary_bytes: int = 256 * 1024


@dataclass
class S3Config:
    """Credentials and endpoint of an `s3://` trace store; empty values use the default AWS
    chain (environment, profile, instance role)."""

    endpoint_url: str = ""  # MinIO, moto or any S3-compatible store
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""


@dataclass
class RetentionConfig:
    """How long data is kept; whole days (partitions, block prefixes) are dropped."""

    metrics_days: int = 30
    traces_days: int = 7
    interval_seconds: float = 3600.0


@dataclass
class Config:
    """The whole static configuration of one daemon."""

    data_dir: str = "./tidegate-data"
    log_level: str = "info"
    shutdown_timeout_seconds: float = 30.0
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    rollups: RollupsConfig = field(default_factory=RollupsConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    s3: S3Config = field(default_factory=S3Config)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def trace_store_url(self) -> str:
        """The configured trace store, or the embedded default under the data directory."""
        if self.traces.store:
            return self.traces.store
        return (Path(self.data_dir).resolve() / "traces").as_uri()

    def spool_directory(self) -> Path:
        """The configured spool directory, or `<data_dir>/spool`."""
        return Path(self.spool.directory or Path(self.data_dir) / "spool").resolve()

    def validate(self) -> None:
        """Check the invariants no single field can express; raise ConfigError naming the key."""
        for key in ("grpc.listen", "http.listen"):
            parse_listen(key, lookup(self, key))
        positive = [
            "grpc.max_message_bytes",
            "grpc.max_concurrent_rpcs",
            "storage.connect_timeout_seconds",
            "ingest.max_attributes",
            "ingest.max_attribute_value_bytes",
            "ingest.max_name_bytes",
            "ingest.max_past_seconds",
            "ingest.max_future_seconds",
            "ingest.flush_interval_seconds",
            "ingest.flush_points",
            "ingest.max_buffered_points",
            "ingest.max_in_flight_bytes",
            "ingest.decode_threads",
            "ingest.retry_after_seconds",
            "shutdown_timeout_seconds",
            "rollups.window_seconds",
            "rollups.compression",
            "traces.block_max_bytes",
            "traces.block_max_age_seconds",
            "traces.max_buffered_spans",
            "retention.metrics_days",
            "retention.traces_days",
            "retention.interval_seconds",
            "live.refresh_seconds",
        ]
        for key in positive:
            if not math.isfinite(lookup(self, key)) or lookup(self, key) <= 0:
                raise ConfigError(
                    f"{key} must be a finite number greater than 0, got {lookup(self, key)!r}"
                )
        if self.grpc.max_message_bytes > 1024 * MIB:
            raise ConfigError("grpc.max_message_bytes must be at most 1 GiB")
        if not 0 <= self.traces.dictionary_bytes <= 16 * MIB:
            raise ConfigError("traces.dictionary_bytes must be between 0 and 16 MiB")
        if not 0 <= self.ingest.decode_thread_niceness <= 19:
            raise ConfigError(
                "ingest.decode_thread_niceness must be between 0 and 19, got "
                f"{self.ingest.decode_thread_niceness!r}"
            )
        if self.ingest.flush_points > self.ingest.max_buffered_points:
            raise ConfigError("ingest.flush_points must not exceed ingest.max_buffered_points")
        if 3600 % self.rollups.window_seconds != 0:
            raise ConfigError(
                f"rollups.window_seconds must divide 3600, got {self.rollups.window_seconds}"
            )
        if self.rollups.lateness_seconds < 0:
            raise ConfigError("rollups.lateness_seconds must not be negative")
        if not 10 <= self.rollups.compression <= 10_000:
            raise ConfigError("rollups.compression must be between 10 and 10000")
        if self.rollups.hour_flush_seconds < self.rollups.window_seconds:
            raise ConfigError("rollups.hour_flush_seconds must be at least rollups.window_seconds")
        if self.storage.timescale not in {"auto", "off"}:
            raise ConfigError(
                f"storage.timescale must be auto or off, got {self.storage.timescale!r}"
            )
        if self.spool.durability not in {"fsync", "memory"}:
            raise ConfigError(
                f"spool.durability must be fsync or memory, got {self.spool.durability!r}"
            )
        if self.spool.segment_bytes < 64 * 1024:
            raise ConfigError("spool.segment_bytes must be at least 65536")
        if self.spool.max_bytes < self.spool.segment_bytes:
            raise ConfigError("spool.max_bytes must be at least spool.segment_bytes")
        if not 1 <= self.traces.zstd_level <= 19:
            raise ConfigError("traces.zstd_level must be between 1 and 19")
        if self.traces.store and not self.traces.store.startswith(("file:///", "s3://")):
            raise ConfigError(
                "traces.store must be file:///path or s3://bucket/prefix, "
                f"got {self.traces.store!r}"
            )
        if self.live.source not in {"file", "postgres", "redis"}:
            raise ConfigError(
                f"live.source must be file, postgres or redis, got {self.live.source!r}"
            )
        if bool(self.grpc.tls_cert_file) != bool(self.grpc.tls_key_file):
            raise ConfigError("grpc.tls_cert_file and grpc.tls_key_file must be set together")
        if self.grpc.tls_client_ca_file and not self.grpc.tls_cert_file:
            raise ConfigError("grpc.tls_client_ca_file needs grpc.tls_cert_file and tls_key_file")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(
                f"log_level must be debug, info, warning or error, got {self.log_level!r}"
            )


def parse_listen(key: str, value: str) -> tuple[str, int]:
    """Split ``host:port``; port 0 asks the OS for a free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def lookup(config: Config, dotted: str) -> Any:
    target: Any = config
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


def load(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration from defaults, a TOML file, the environment and flag overrides."""
    config = Config()
    if path is not None:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        _apply_mapping(config, _without_live_settings(document), prefix="")
    for dotted, raw in _from_environment(os.environ if environ is None else environ).items():
        _set(config, dotted, raw, from_text=True)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(config, dotted, value, from_text=isinstance(value, str))
    config.validate()
    return config


def _without_live_settings(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The document without `[live.settings]`: those are live settings, read and validated by
    the file source of `tidegate.live`, not static keys."""
    live = document.get("live")
    if not isinstance(live, Mapping) or "settings" not in live:
        return document
    return {**document, "live": {k: v for k, v in live.items() if k != "settings"}}


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    known = {name.upper().replace(".", "_"): name for name in _all_keys(Config())}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_NOT_CONFIG):
            continue
        if name in ENV_ALIASES:
            alias_of = ENV_ALIASES[name]
            long_name = ENV_PREFIX + alias_of.upper().replace(".", "_")
            if long_name in environ and long_name != name:
                raise ConfigError(f"set {name} or {long_name}, not both")
            settings[alias_of] = value
            continue
        dotted = known.get(name.removeprefix(ENV_PREFIX))
        if dotted is None:
            raise ConfigError(f"unknown environment variable {name}")
        settings[dotted] = value
    return settings


def _all_keys(section: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(_all_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def _apply_mapping(section: Any, document: Mapping[str, Any], prefix: str) -> None:
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in document.items():
        if key not in names:
            raise ConfigError(f"unknown configuration key {prefix}{key}")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{key} must be a table")
            _apply_mapping(current, value, prefix=f"{prefix}{key}.")
        else:
            _set(section, key, value, from_text=False, dotted_name=prefix + key)


def _set(
    target: Any, dotted: str, value: Any, *, from_text: bool, dotted_name: str | None = None
) -> None:
    name = dotted_name or dotted
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = getattr(target, part, None)
        if target is None or not dataclasses.is_dataclass(target):
            raise ConfigError(f"unknown configuration key {name}")
    kinds = {f.name: f.type for f in dataclasses.fields(target)}
    if leaf not in kinds or dataclasses.is_dataclass(getattr(target, leaf)):
        raise ConfigError(f"unknown configuration key {name}")
    kind = _resolve(kinds[leaf])
    setattr(target, leaf, _coerce(name, value, kind, from_text))


def _resolve(annotation: Any) -> type:
    # Annotations are strings here (postponed evaluation); fields are plain scalars.
    resolved = {"int": int, "float": float, "str": str, "bool": bool}.get(str(annotation))
    if resolved is None:
        raise TypeError(f"unsupported config field type {annotation}")
    return resolved


def _coerce(name: str, value: Any, kind: type, from_text: bool) -> Any:
    if from_text and isinstance(value, str):
        try:
            if kind is bool:
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return lowered in {"true", "1", "yes"}
            return kind(value)
        except ValueError as exc:
            raise ConfigError(f"{name} must be {kind.__name__}, got {value!r}") from exc
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value
