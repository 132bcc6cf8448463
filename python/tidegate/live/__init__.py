"""Settings that change without a restart (docs/live-config.md): tenant limits, sampling
ratios, rollup window, retention and log level, read from the config file, PostgreSQL or
Redis, validated key by key, and handed to subscribers as immutable snapshots."""

from tidegate.errors import LiveSourceError
from tidegate.live.manager import LiveSettings, Subscriber
from tidegate.live.settings import LIMIT_KINDS, PATTERNS, Value, format_value, parse_value
from tidegate.live.snapshot import LiveSnapshot
from tidegate.live.sources import FileSource, LiveSource, open_source

__all__ = [
    "LIMIT_KINDS",
    "PATTERNS",
    "FileSource",
    "LiveSettings",
    "LiveSnapshot",
    "LiveSource",
    "LiveSourceError",
    "Subscriber",
    "Value",
    "format_value",
    "open_source",
    "parse_value",
]
