-- Trace blocks get a row of their own, and index rows get leaner (docs/architecture.md,
-- "Traces").
--
-- A block's frames are compressed with one dictionary (traces sampled across the block; what
-- else it holds: docs/architecture.md, "Traces"): it lives in the block's `trace_blocks` row,
-- read in the same query that finds a trace's frames, so that fetching a trace stays one
-- query plus one ranged GET per block. Index rows name their block by an 8-byte id instead of
-- its ~60-character key and hold attribute hashes as 32-bit integers (half the array and GIN
-- bytes).

CREATE TABLE trace_blocks (
    block_id    bigint PRIMARY KEY,      -- low 64 bits of the block's content hash
    block_key   text NOT NULL UNIQUE,    -- object key in the trace store
    -- zstd-compressed dictionary of the block's frames; empty: none
    dictionary  bytea NOT NULL DEFAULT ''
);
-- Already compressed: stored out of line without another compression attempt.
ALTER TABLE trace_blocks ALTER COLUMN dictionary SET STORAGE EXTERNAL;

-- Blocks written before this migration: frames without a dictionary. Their id is what the
-- core gives the same bytes now (the low 64 bits of the content hash, the last 16 hex digits
-- of the key), so a block cut again from the same spans names the same row.
INSERT INTO trace_blocks (block_id, block_key)
SELECT CASE WHEN block_key ~ '[0-9a-f]{32}\.tgb$'
            THEN ('x' || substr(block_key, length(block_key) - 19, 16))::bit(64)::bigint
            ELSE ('x' || substr(md5(block_key), 1, 16))::bit(64)::bigint END,
       block_key
FROM (SELECT DISTINCT block_key FROM trace_index) AS keys;

-- The low 32 bits of each old 64-bit hash, as the core's attribute_hash now computes them
-- (a function: ALTER ... USING takes no subquery).
CREATE FUNCTION tidegate_low32(hashes bigint[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(
        ((h & 2147483647) - CASE WHEN h & 2147483648 = 0 THEN 0 ELSE 2147483648 END)::integer
        ORDER BY n), '{}')
    FROM unnest(hashes) WITH ORDINALITY AS t(h, n)
$$;

ALTER TABLE trace_index ADD COLUMN block_id bigint;
UPDATE trace_index AS i SET block_id = b.block_id
FROM trace_blocks AS b WHERE b.block_key = i.block_key;
ALTER TABLE trace_index
    ALTER COLUMN block_id SET NOT NULL,
    DROP COLUMN block_key,
    ALTER COLUMN attributes TYPE integer[] USING tidegate_low32(attributes);
DROP FUNCTION tidegate_low32(bigint[]);

-- A trace is looked up by (trace id, tenant): one index on both, so that the plan does not
-- depend on statistics. Without them (a new day's partition before its first analyze) the
-- planner ANDed the trace id index with the (tenant, service, start) one and read every
-- entry of the tenant: 25 ms instead of 0.2 on a day of 300,000 rows.
DROP INDEX trace_index_trace_id;
CREATE INDEX trace_index_trace_id_tenant ON trace_index (trace_id, tenant);
