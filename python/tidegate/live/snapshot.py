"""One immutable view of the live settings in force, with typed accessors for their users."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tidegate.config import Config
from tidegate.live.settings import ANY, LIMIT_KINDS, Value


@dataclass(frozen=True)
class StaticFallback:
    """The static Config's values of the keys that exist in both places."""

    window_seconds: int
    metrics_days: int
    traces_days: int
    log_level: str

    @classmethod
    def of(cls, config: Config) -> StaticFallback:
        return cls(
            window_seconds=config.rollups.window_seconds,
            metrics_days=config.retention.metrics_days,
            traces_days=config.retention.traces_days,
            log_level=config.log_level.lower(),
        )


@dataclass(frozen=True)
class LiveSnapshot:
    """The validated live values in force at one moment; never changes once built."""

    #: Every validated key that is set, by key.
    values: Mapping[str, Value]
    fallback: StaticFallback

    @classmethod
    def build(cls, values: Mapping[str, Value], config: Config) -> LiveSnapshot:
        return cls(MappingProxyType(dict(values)), StaticFallback.of(config))

    def _own_or_any(self, section: str, name: str, field: str) -> Value | None:
        own = self.values.get(f"{section}.{name}.{field}")
        return own if own is not None else self.values.get(f"{section}.{ANY}.{field}")

    def limit(self, tenant: str, kind: str) -> tuple[float, float] | None:
        """``(rate per second, burst)`` of ``tenant`` for ``kind`` (points, spans or
        requests), or None when unlimited. Rate and burst each fall back to the ``*`` key on
        their own; a burst set nowhere is one second of the rate, at least 1."""
        if kind not in LIMIT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(LIMIT_KINDS)}, got {kind!r}")
        rate = self._own_or_any("limits", tenant, f"{kind}_per_second")
        if rate is None:
            return None
        burst = self._own_or_any("limits", tenant, f"{kind}_burst")
        return float(rate), float(burst) if burst is not None else max(1.0, float(rate))

    def series_limits(self) -> tuple[dict[str, int], int | None]:
        """``(max active series by tenant, the * default or None for unlimited)``."""
        own = self._by_name("cardinality", "max_active_series")
        default = own.pop(ANY, None)
        return {k: int(v) for k, v in own.items()}, None if default is None else int(default)

    def sampling(self) -> tuple[dict[str, float], float]:
        """``(ratio by service, the * default)``; the default is 1.0 (keep everything)."""
        own = self._by_name("sampling", "ratio")
        default = own.pop(ANY, 1.0)
        return {k: float(v) for k, v in own.items()}, float(default)

    def _by_name(self, section: str, field: str) -> dict[str, Value]:
        head, tail = f"{section}.", f".{field}"
        return {
            key[len(head) : -len(tail)]: value
            for key, value in self.values.items()
            if key.startswith(head) and key.endswith(tail)
        }

    @property
    def window_seconds(self) -> int:
        """``rollups.window_seconds``, or the static value when unset."""
        return int(self.values.get("rollups.window_seconds", self.fallback.window_seconds))

    @property
    def metrics_days(self) -> int:
        """``retention.metrics_days``, or the static value when unset."""
        return int(self.values.get("retention.metrics_days", self.fallback.metrics_days))

    @property
    def traces_days(self) -> int:
        """``retention.traces_days``, or the static value when unset."""
        return int(self.values.get("retention.traces_days", self.fallback.traces_days))

    @property
    def log_level(self) -> str:
        """``log_level`` (lowercase), or the static value when unset."""
        return str(self.values.get("log_level", self.fallback.log_level))
