"""SQL over tidegate's rollups for request rate, error ratio, p95 and availability.

Everything reads `rollups` rows of the configured window (``window_seconds <> 3600``) of
explicit-bucket histograms, following docs/architecture.md, "Rollups":

- a cumulative histogram's row holds the newest state of its counter epoch, and its
  precomputed p50..p999 columns are NULL (a window is a difference between rows), so every
  query first takes, per (series, epoch, bucket, Grafana interval), the newest state and
  subtracts the previous interval's state of the same epoch (``lag``); the first state of an
  epoch counts from zero, as the query engine does. Rows from two intervals before the range
  are read as baselines only; every interval that overlaps the range is answered;
- a delta histogram's rows are additive: they are summed.

p95 then comes from the summed bucket increases, interpolated linearly inside the bucket that
holds the 95th percentile (Prometheus' ``histogram_quantile``; the +Inf bucket answers its
lower bound). Buckets are keyed by their upper bound, so series with different layouts still
add up to one cumulative distribution.

Grafana macros used: $__timeGroup, $__timeFrom(), $__timeTo(), $__unixEpochFrom(), and the
variables $__interval and $__interval_ms. The range filter is written out instead of
$__timeFilter because it has to reach two intervals before the range for the baselines.
"""

from __future__ import annotations

HTTP_DURATION = "http.server.request.duration"

# Bucket counts keyed by upper bound, or the row's count as one bucket.
_BUCKETS = """(SELECT x.n, coalesce(r.bounds[x.i], 'Infinity') FROM unnest(r.bucket_counts)
                        WITH ORDINALITY AS x (n, i))"""
_COUNT = "(VALUES (r.count, 'Infinity'::float8))"

_INCREASES = """
WITH s AS (
    SELECT id, temporality = 'cumulative' AS cumulative,
           resource ->> 'service.name' AS service,
           coalesce(attributes ->> 'http.response.status_code' ~ '^5[0-9][0-9]$', false)
               AS server_error
    FROM series
    WHERE metric_name = {metric} AND metric_type = 'histogram'
      AND resource ->> 'service.name' IS NOT NULL{services}
),
r AS (
    SELECT s.service, s.cumulative, s.server_error, r.series_id, r.epoch_start, r.last_time,
           r.count, r.bounds, r.bucket_counts,
           $__timeGroup(r.window_start, $__interval) AS time
    FROM rollups AS r
    JOIN s ON s.id = r.series_id
    WHERE r.window_seconds <> 3600
      AND r.window_start >= $__timeFrom()::timestamptz
                            - 2 * $__interval_ms * interval '1 millisecond'
      AND r.window_start < $__timeTo()::timestamptz
),
b AS (
    SELECT r.*, u.n, u.le
    FROM r
    CROSS JOIN LATERAL {source} AS u (n, le)
),
st AS (
    SELECT series_id, epoch_start, cumulative, service, server_error, le, time,
           CASE WHEN cumulative THEN (array_agg(n ORDER BY last_time DESC))[1]
                ELSE sum(n) END AS n
    FROM b
    GROUP BY series_id, epoch_start, cumulative, service, server_error, le, time
),
inc AS (
    SELECT service, server_error, le, time,
           CASE WHEN cumulative THEN greatest(0, n - coalesce(lag(n) OVER w, 0))
                ELSE n END AS n
    FROM st
    WINDOW w AS (PARTITION BY series_id, epoch_start, le ORDER BY time)
)"""

APP_SERVICES = "\n      AND resource ->> 'service.name' IN ($service)"


def increases(buckets: bool, metric: str = "'$metric'", services: str = APP_SERVICES) -> str:
    """The shared CTEs, ending in ``inc(service, server_error, le, time, n)``."""
    return _INCREASES.format(
        metric=metric, services=services, source=_BUCKETS if buckets else _COUNT
    )


def request_rate() -> str:
    return f"""{increases(False)}
SELECT time, service AS metric, (sum(n) / ($__interval_ms / 1000.0))::float8 AS value
FROM inc
WHERE time + $__interval_ms / 1000.0 > $__unixEpochFrom()
GROUP BY time, service
ORDER BY time"""


def error_ratio() -> str:
    return f"""{increases(False)}
SELECT time, service AS metric,
       (sum(n) FILTER (WHERE server_error) / nullif(sum(n), 0))::float8 AS value
FROM inc
WHERE time + $__interval_ms / 1000.0 > $__unixEpochFrom()
GROUP BY time, service
ORDER BY time"""


def latency_p95() -> str:
    return f"""{increases(True)},
agg AS (
    SELECT service, time, le, sum(n) AS n
    FROM inc
    WHERE time + $__interval_ms / 1000.0 > $__unixEpochFrom()
    GROUP BY service, time, le
),
cdf AS (
    SELECT service, time, le, n,
           sum(n) OVER (PARTITION BY service, time ORDER BY le) AS upto,
           sum(n) OVER (PARTITION BY service, time) AS total,
           coalesce(lag(le) OVER (PARTITION BY service, time ORDER BY le), 0) AS lower
    FROM agg
)
SELECT time, metric, value FROM (
    SELECT DISTINCT ON (service, time) time, service AS metric,
           CASE WHEN le = 'Infinity' THEN lower
                ELSE lower + (le - lower) * ((0.95 * total - (upto - n)) / n)::float8
           END AS value
    FROM cdf
    WHERE total > 0 AND n > 0 AND upto >= 0.95 * total
    ORDER BY service, time, le
) AS q
ORDER BY time"""


def availability(by_service: bool) -> str:
    """Requests answered without a 5xx over all requests, from every service."""
    group = "\nGROUP BY service\nORDER BY service" if by_service else ""
    head = "service, " if by_service else ""
    return f"""{increases(False, metric=f"'{HTTP_DURATION}'", services="")}
SELECT {head}(sum(n) FILTER (WHERE NOT server_error) / nullif(sum(n), 0))::float8
       AS availability
FROM inc
WHERE time + $__interval_ms / 1000.0 > $__unixEpochFrom(){group}"""


METRIC_VARIABLE = """
SELECT DISTINCT metric_name FROM series
WHERE metric_type = 'histogram' AND unit = 's' AND metric_name LIKE 'http.server.%'
ORDER BY 1"""

SERVICE_VARIABLE = """
SELECT DISTINCT resource ->> 'service.name' FROM series
WHERE metric_name = '$metric' AND resource ->> 'service.name' IS NOT NULL
ORDER BY 1"""
