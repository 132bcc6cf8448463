"""tidegate: an OpenTelemetry ingest daemon that stores metrics in PostgreSQL."""

from tidegate._core import __version__

__all__ = ["__version__"]
