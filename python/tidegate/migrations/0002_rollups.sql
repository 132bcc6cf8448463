-- Rollups: one row per (series, window, counter epoch, bucket layout) and per writer flush.
-- Rows are partial: a late point, a restart or a second daemon adds another row for the same
-- window, and readers merge them (docs/architecture.md, "Rollups"). Windows of the configured
-- length (window_seconds, default 60) and hours (window_seconds = 3600) share the table.
CREATE TABLE rollups (
    series_id            bigint NOT NULL,
    window_start         timestamptz NOT NULL,
    window_seconds       integer NOT NULL,
    -- Cumulative types only: the counter epoch (the points' start time, or the time of a
    -- detected reset); NULL for gauges, delta data, and unset start times.
    epoch_start          timestamptz,
    points               bigint NOT NULL,   -- data points merged into the row
    count                bigint NOT NULL,   -- values, or histogram/summary observations
    sum                  double precision,  -- NULL where a histogram point had no sum
    min                  double precision,
    max                  double precision,
    first_time           timestamptz NOT NULL,
    first_value          double precision,  -- gauges and sums only
    last_time            timestamptz NOT NULL,
    last_value           double precision,  -- gauges and sums only
    digest               bytea,             -- t-digest, format v1 (docs/architecture.md)
    -- This partial's own quantiles, for plain SQL readers; merging partials needs the digest.
    p50                  double precision,
    p90                  double precision,
    p95                  double precision,
    p99                  double precision,
    p999                 double precision,
    bounds               double precision[],  -- explicit-bucket histograms
    bucket_counts        bigint[],
    exp_scale            integer,             -- exponential histograms
    exp_zero_count       bigint,
    exp_positive_offset  integer,
    exp_positive         bigint[],
    exp_negative_offset  integer,
    exp_negative         bigint[],
    quantiles            double precision[],  -- summaries: the newest point's quantiles
    quantile_values      double precision[]
) PARTITION BY RANGE (window_start);
CREATE INDEX rollups_series_window ON rollups (series_id, window_seconds, window_start);

-- From here on the list of day-partitioned tables is the catalogue itself: every partitioned
-- table of tidegate's schema is partitioned by UTC day, so a migration that adds one needs
-- no new version of this function, only tidegate_ensure_known_days().
CREATE OR REPLACE FUNCTION tidegate_ensure_day(day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    parent text;
BEGIN
    FOR parent IN
        SELECT c.relname
        FROM pg_partitioned_table AS p
        JOIN pg_class AS c ON c.oid = p.partrelid
        WHERE c.relnamespace = current_schema()::regnamespace
        ORDER BY c.relname
    LOOP
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

-- Gives every day that already has a partition somewhere its partition in every table: a
-- migration that adds a partitioned table calls it, so that rows of those days find theirs.
CREATE FUNCTION tidegate_ensure_known_days() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT DISTINCT to_date(right(c.relname, 8), 'YYYYMMDD')
        FROM pg_inherits AS i
        JOIN pg_partitioned_table AS p ON p.partrelid = i.inhparent
        JOIN pg_class AS c ON c.oid = i.inhrelid
    LOOP
        PERFORM tidegate_ensure_day(day);
    END LOOP;
END;
$$;

SELECT tidegate_ensure_known_days();
