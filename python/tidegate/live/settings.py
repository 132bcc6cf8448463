"""The registry of live keys: which keys exist, and how each value is parsed and checked.

Values arrive as text (PostgreSQL, Redis, the CLI) or as native TOML values (the file
source); both are accepted. Every failure is a ``ConfigError`` that names the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tidegate.config import TENANT_NAME
from tidegate.errors import ConfigError

#: A validated value: floats for rates, bursts and ratios, ints for counts, str for log_level.
Value = int | float | str

#: The key that applies to every tenant (or service) without a value of its own.
ANY = "*"
LIMIT_KINDS = ("points", "spans", "requests")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Service names come from clients' resources; bound them so a key stays printable.
MAX_SERVICE_CHARS = 255
# Values are echoed in messages; a long one is cut so that log lines stay short.
MAX_ECHO_CHARS = 40


@dataclass(frozen=True)
class KeySpec:
    """One family of keys, e.g. ``limits.*.points_per_second`` (every tenant's rate)."""

    #: The family: the key with its tenant or service replaced by ``*``. It is the `key` label
    #: of the rejection counter, so that the label has a bounded set of values.
    pattern: str
    parse: Callable[[str, object], Value]


def _echo(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= MAX_ECHO_CHARS else text[: MAX_ECHO_CHARS - 3] + "..."


def _number(key: str, raw: object) -> float:
    if isinstance(raw, bool):
        raise ConfigError(f"{key} must be a number, got {_echo(raw)}")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {_echo(raw)}") from None
    else:
        raise ConfigError(f"{key} must be a number, got {type(raw).__name__}")
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {_echo(raw)}")
    return value


def _integer(key: str, raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[+-]?[0-9]+", raw.strip()):
        return int(raw.strip())
    raise ConfigError(f"{key} must be a whole number, got {_echo(raw)}")


def _rate(key: str, raw: object) -> float:
    value = _number(key, raw)
    if value <= 0:
        raise ConfigError(f"{key} must be greater than 0, got {_echo(raw)}")
    return value


def _burst(key: str, raw: object) -> float:
    value = _number(key, raw)
    if value < 1:
        raise ConfigError(f"{key} must be at least 1, got {_echo(raw)}")
    return value


def _series(key: str, raw: object) -> int:
    value = _integer(key, raw)
    if value < 0:
        raise ConfigError(f"{key} must be 0 or more, got {_echo(raw)}")
    return value


def _ratio(key: str, raw: object) -> float:
    value = _number(key, raw)
    if not 0 <= value <= 1:
        raise ConfigError(f"{key} must be between 0 and 1, got {_echo(raw)}")
    return value


def _window(key: str, raw: object) -> int:
    value = _integer(key, raw)
    if value < 1 or 3600 % value != 0:
        raise ConfigError(f"{key} must be a whole number of seconds dividing 3600, got {value}")
    return value


def _days(key: str, raw: object) -> int:
    value = _integer(key, raw)
    if value < 1:
        raise ConfigError(f"{key} must be at least 1, got {value}")
    return value


def _log_level(key: str, raw: object) -> str:
    if isinstance(raw, str) and raw.strip().lower() in LOG_LEVELS:
        return raw.strip().lower()
    raise ConfigError(f"{key} must be one of {', '.join(LOG_LEVELS)}, got {_echo(raw)}")


FIXED_KEYS = {
    "rollups.window_seconds": KeySpec("rollups.window_seconds", _window),
    "retention.metrics_days": KeySpec("retention.metrics_days", _days),
    "retention.traces_days": KeySpec("retention.traces_days", _days),
    "log_level": KeySpec("log_level", _log_level),
}
LIMIT_FIELDS = {
    **{f"{kind}_per_second": _rate for kind in LIMIT_KINDS},
    **{f"{kind}_burst": _burst for kind in LIMIT_KINDS},
}
#: Every key family, for the documentation and the rejection counter's `key` label.
PATTERNS = (
    *(f"limits.*.{name}" for name in LIMIT_FIELDS),
    "cardinality.*.max_active_series",
    "sampling.*.ratio",
    *FIXED_KEYS,
)
#: The rejection label of a key that is not in the registry at all.
UNKNOWN_PATTERN = "unknown"


def spec_for(key: str) -> KeySpec:
    """The family ``key`` belongs to; ``ConfigError`` naming the key when it is unknown."""
    if key in FIXED_KEYS:
        return FIXED_KEYS[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] in {"limits", "cardinality"}:
        section, tenant, name = parts
        _check_tenant(key, tenant)
        if section == "limits" and name in LIMIT_FIELDS:
            return KeySpec(f"limits.*.{name}", LIMIT_FIELDS[name])
        if section == "cardinality" and name == "max_active_series":
            return KeySpec("cardinality.*.max_active_series", _series)
    if key.startswith("sampling.") and key.endswith(".ratio") and len(key) > len("sampling.ratio"):
        _check_service(key, key.removeprefix("sampling.").removesuffix(".ratio"))
        return KeySpec("sampling.*.ratio", _ratio)
    shown = key if len(key) <= 80 else key[:77] + "..."
    raise ConfigError(f"unknown live setting {shown!r} (see docs/live-config.md)")


def _check_tenant(key: str, tenant: str) -> None:
    if tenant != ANY and not TENANT_NAME.fullmatch(tenant):
        raise ConfigError(
            f"{key}: tenant {_echo(tenant)} must be * or match {TENANT_NAME.pattern} "
            "(lowercase letters, digits, _ and -)"
        )


def _check_service(key: str, service: str) -> None:
    if not service or len(service) > MAX_SERVICE_CHARS or not service.isprintable():
        raise ConfigError(f"{key}: the service name must be 1 to 255 printable characters")
    if any(c.isspace() for c in service):
        raise ConfigError(f"{key}: the service name must not contain spaces")


def parse_value(key: str, raw: object) -> Value:
    """The validated value of ``key``; ``ConfigError`` naming the key and the reason."""
    return spec_for(key).parse(key, raw)


def rejection_label(key: str) -> str:
    """The bounded `key` label for a rejected value of ``key``: its family or ``unknown``."""
    try:
        return spec_for(key).pattern
    except ConfigError:
        return UNKNOWN_PATTERN


def format_value(value: object) -> str:
    """A value as the CLI prints it: TOML-like, without quotes."""
    return repr(value) if isinstance(value, float) else str(value)


def flatten(table: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested TOML tables as dotted keys: ``{"limits": {"acme": {"x": 1}}}`` → ``limits.acme.x``.

    Quoted keys may already hold dots (``"sampling.checkout.api.ratio" = 0.5``); a key reached
    by two spellings is an error rather than a silent choice.
    """
    flat: dict[str, object] = {}
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        found = flatten(value, dotted + ".") if isinstance(value, Mapping) else {dotted: value}
        for key, leaf in found.items():
            if key in flat:
                raise ConfigError(f"live setting {key} is set twice in [live.settings]")
            flat[key] = leaf
    return flat
