-- Trace index: one row per (trace, block) — where the trace's frame sits in the block, and
-- what search needs. Written after the block is stored. Partitioned by UTC day of the start
-- of the trace's spans in that block; retention drops whole days.
CREATE TABLE trace_index (
    trace_id      bytea NOT NULL,        -- 16 bytes
    block_key     text NOT NULL,         -- object key in the trace store
    frame_offset  bigint NOT NULL,       -- byte offset of the zstd frame in the block
    frame_length  bigint NOT NULL,
    start_time    timestamptz NOT NULL,  -- earliest span start of the trace in this block
    end_time      timestamptz NOT NULL,  -- latest span end
    service       text NOT NULL,         -- the root span's service.name, else the first span's
    root_name     text,                  -- name of the root span, when it is in this block
    status        integer NOT NULL,      -- worst span status: 0 unset, 1 ok, 2 error
    span_count    integer NOT NULL,
    -- Up to 16 distinct span attributes as xxh3-64 hashes of 'key=value' (the core's
    -- attribute_hash): small rows and few GIN entries; search hashes the pair it looks for.
    attributes    bigint[] NOT NULL
) PARTITION BY RANGE (start_time);
CREATE INDEX trace_index_trace_id ON trace_index (trace_id);
CREATE INDEX trace_index_service_start ON trace_index (service, start_time);
CREATE INDEX trace_index_start ON trace_index (start_time);
CREATE INDEX trace_index_attributes ON trace_index USING gin (attributes);

CREATE OR REPLACE FUNCTION tidegate_ensure_day(day date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    parent text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['point_chunks', 'histogram_chunks', 'exp_histogram_points',
                                  'summary_points', 'rollups', 'trace_index'] LOOP
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

-- Days whose point partitions exist already get their trace_index partition now.
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT to_date(right(c.relname, 8), 'YYYYMMDD')
        FROM pg_inherits AS i
        JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'point_chunks'::regclass
    LOOP
        PERFORM tidegate_ensure_day(day);
    END LOOP;
END;
$$;
