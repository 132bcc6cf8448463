-- Metrics storage: series catalogue, Gauge/Sum and histogram points as per-series chunks, one
-- row per exponential histogram and summary point. Every point table is range-partitioned by
-- UTC day; tidegate_ensure_day() creates a day's partitions before a batch that touches it is
-- copied.

CREATE TABLE series (
    id            bigint PRIMARY KEY,          -- xxh3-64 of the canonical form (docs/architecture.md)
    fingerprint   bigint NOT NULL,             -- second, independent hash: tells collisions apart
    metric_name   text NOT NULL,
    metric_type   text NOT NULL CHECK (metric_type IN
                    ('gauge', 'sum', 'histogram', 'exponential_histogram', 'summary')),
    temporality   text CHECK (temporality IN ('delta', 'cumulative')),
    monotonic     boolean,
    unit          text NOT NULL,
    description   text NOT NULL,
    resource      jsonb NOT NULL,
    scope         jsonb NOT NULL,              -- {"name", "version", "attributes"}
    attributes    jsonb NOT NULL,
    first_seen    timestamptz NOT NULL
);
CREATE INDEX series_metric_name ON series (metric_name);

-- Gauge and Sum points. One row carries every point of one series, one UTC day and one flush,
-- so COPY and the btree see one row per chunk instead of one per point.
CREATE TABLE point_chunks (
    series_id          bigint NOT NULL,
    start_time         timestamptz NOT NULL,   -- earliest point time in the chunk
    end_time           timestamptz NOT NULL,   -- latest point time in the chunk
    point_count        integer NOT NULL,
    point_times        timestamptz[] NOT NULL,
    point_values       double precision[] NOT NULL,
    point_start_times  timestamptz[]           -- Sum points only: each point's start time
) PARTITION BY RANGE (start_time);
CREATE INDEX point_chunks_series_time ON point_chunks (series_id, start_time);

-- Explicit-bucket histogram points, chunked like point_chunks: one row per series, UTC day,
-- flush and set of bounds (points whose bounds differ go to different rows). Element i of each
-- per-point array belongs to point i; the bounds are stored once for the whole row.
CREATE TABLE histogram_chunks (
    series_id          bigint NOT NULL,
    start_time         timestamptz NOT NULL,   -- earliest point time in the chunk
    end_time           timestamptz NOT NULL,   -- latest point time in the chunk
    point_count        integer NOT NULL,
    point_times        timestamptz[] NOT NULL,
    point_start_times  timestamptz[] NOT NULL, -- NULL element where the start is unset
    counts             bigint[] NOT NULL,
    sums               double precision[] NOT NULL,  -- NULL element where absent
    mins               double precision[] NOT NULL,  -- NULL element where absent
    maxs               double precision[] NOT NULL,  -- NULL element where absent
    bounds             double precision[] NOT NULL,  -- shared by every point of the chunk
    -- point_count × (length(bounds) + 1) counts, point-major; '{}' when the points have
    -- neither bounds nor buckets.
    bucket_counts      bigint[] NOT NULL
) PARTITION BY RANGE (start_time);
CREATE INDEX histogram_chunks_series_time ON histogram_chunks (series_id, start_time);

CREATE TABLE exp_histogram_points (
    time             timestamptz NOT NULL,
    series_id        bigint NOT NULL,
    start_time       timestamptz,
    count            bigint NOT NULL,
    sum              double precision,
    min              double precision,
    max              double precision,
    scale            integer NOT NULL,
    zero_count       bigint NOT NULL,
    zero_threshold   double precision NOT NULL,
    positive_offset  integer NOT NULL,
    positive_counts  bigint[] NOT NULL,
    negative_offset  integer NOT NULL,
    negative_counts  bigint[] NOT NULL
) PARTITION BY RANGE (time);
CREATE INDEX exp_histogram_points_series_time ON exp_histogram_points (series_id, time);

CREATE TABLE summary_points (
    time             timestamptz NOT NULL,
    series_id        bigint NOT NULL,
    start_time       timestamptz,
    count            bigint NOT NULL,
    sum              double precision NOT NULL,
    quantiles        double precision[] NOT NULL,
    quantile_values  double precision[] NOT NULL
) PARTITION BY RANGE (time);
CREATE INDEX summary_points_series_time ON summary_points (series_id, time);

-- One row per Gauge or Sum point, for any SQL client.
CREATE VIEW metric_points AS
SELECT p.time, c.series_id, p.value
FROM point_chunks AS c
CROSS JOIN LATERAL unnest(c.point_times, c.point_values) AS p (time, value);

-- Sum points with their start time, for increase and reset detection.
CREATE VIEW metric_sum_points AS
SELECT p.time, c.series_id, p.value, p.start_time
FROM point_chunks AS c
CROSS JOIN LATERAL unnest(c.point_times, c.point_values, c.point_start_times)
    AS p (time, value, start_time)
WHERE c.point_start_times IS NOT NULL;

-- One row per histogram point, with the columns of a per-point table, for any SQL client.
CREATE VIEW histogram_points AS
SELECT c.point_times[i] AS time, c.series_id, c.point_start_times[i] AS start_time,
       c.counts[i] AS count, c.sums[i] AS sum, c.mins[i] AS min, c.maxs[i] AS max,
       c.bounds, c.bucket_counts[(i - 1) * n + 1 : i * n] AS bucket_counts
FROM histogram_chunks AS c
CROSS JOIN LATERAL (SELECT coalesce(array_length(c.bounds, 1), 0) + 1) AS w (n)
-- A chunk of points without buckets has bucket_counts '{}': every slice of it is '{}' too.
CROSS JOIN LATERAL generate_subscripts(c.point_times, 1) AS i;

-- Creates the partitions of every point table for one UTC day; safe to call concurrently.
CREATE FUNCTION tidegate_ensure_day(day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    parent text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['point_chunks', 'histogram_chunks',
                                  'exp_histogram_points', 'summary_points'] LOOP
        BEGIN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L) '
                -- Chunk rows are a few KB; at the default 2 KB target PostgreSQL would compress
                -- and move every one of them out of line, which costs more CPU than the COPY.
                'WITH (toast_tuple_target = 8160)',
                parent || '_' || to_char(day, 'YYYYMMDD'), parent,
                day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- another daemon created it between the check and the create
        END;
    END LOOP;
END;
$$;
