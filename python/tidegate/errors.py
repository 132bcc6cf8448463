"""Every exception tidegate raises, in one place.

The Rust core's exceptions are declared in the extension module and re-exported here so that
callers import them from one module.
"""

from tidegate._core import DecodeError, TidegateError
from tidegate.spool import SpoolClosedError, SpoolError, SpoolFatalError


class ConfigError(TidegateError, ValueError):
    """The configuration is invalid: an unknown key, a wrong type or a broken invariant."""


class StorageError(TidegateError):
    """PostgreSQL could not be reached, migrated or written to."""


class BlockIdCollisionError(StorageError):
    """Two trace blocks of different content got the same 64-bit id (the low half of a
    128-bit content hash): the second is not indexed, so the first stays readable."""


class QueryError(TidegateError, ValueError):
    """A query is malformed (selector, regex, aggregation, time range); nothing was run."""


class BackpressureError(TidegateError):
    """The daemon holds as much unwritten data as it is allowed to; the client should retry."""

    def __init__(self, message: str, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class AuthenticationError(TidegateError):
    """A request carried no valid API key where one is needed: answered UNAUTHENTICATED
    before its bytes are decompressed or decoded. The message never contains the key."""


class LiveSourceError(TidegateError):
    """The store of live settings could not be reached or read; nothing was changed."""


class TenantNameError(ConfigError):
    """A tenant name is not 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit."""


class ThrottledError(TidegateError):
    """A tenant is over one of its ingest limits (``limit``: points, spans or requests):
    answered RESOURCE_EXHAUSTED with the delay after which its token bucket has room again."""

    def __init__(
        self, message: str, retry_after_seconds: float, *, tenant: str = "", limit: str = ""
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.tenant = tenant
        self.limit = limit


__all__ = [
    "AuthenticationError",
    "BackpressureError",
    "ConfigError",
    "DecodeError",
    "LiveSourceError",
    "QueryError",
    "SpoolClosedError",
    "SpoolError",
    "SpoolFatalError",
    "StorageError",
    "TenantNameError",
    "ThrottledError",
    "TidegateError",
]
