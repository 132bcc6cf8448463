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

-- tidegate_ensure_day() finds the new table in the catalogue; days that already have
-- partitions get this table's now.
SELECT tidegate_ensure_known_days();
