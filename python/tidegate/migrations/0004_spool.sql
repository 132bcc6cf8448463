-- What the sinks have committed out of the spool, written in the same transaction as the data
-- it covers, so that a restart replays exactly what is not stored yet.
CREATE TABLE tidegate_checkpoints (
    sink                 text NOT NULL,         -- 'metrics' or 'traces'
    spool_id             text NOT NULL,         -- which spool the sequence numbers belong to
    -- The committed spool records: every sequence number up to `committed_floor`, plus these.
    committed_floor      bigint NOT NULL,
    committed_extras     bigint[] NOT NULL,
    -- Metrics only: rollup replay starts at `open_from_seq` (records whose data sat in
    -- windows or hours still open at this commit) ...
    open_from_seq        bigint,
    -- ... with the flush time of this commit and of the last commit that wrote every hour,
    -- and the records that one covered (see the core's ReplayFilter).
    closed_at_ns         bigint,
    hours_flushed_at_ns  bigint,
    hour_flush_floor     bigint,
    hour_flush_extras    bigint[],
    -- The batch or block this row was written with: after a failure that may have happened
    -- after COMMIT (a lost reply), the writer reads it to learn whether to write again.
    commit_id            text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (spool_id, sink)
);

-- Requests accepted within the deduplication horizon: a client that resends the same bytes
-- because it lost the acknowledgement is answered again without storing them twice. Rows
-- commit with the data of their request; older ones are deleted.
CREATE TABLE tidegate_accepted_requests (
    request_hash  bytea NOT NULL,   -- 16-byte BLAKE2b of signal, tenant and request bytes
    response      bytea NOT NULL,   -- the Export response it got
    accepted_at   timestamptz NOT NULL
);
CREATE INDEX tidegate_accepted_requests_time ON tidegate_accepted_requests (accepted_at);

-- Blocks being uploaded: a row commits before the upload and is deleted with the block's
-- index rows, so a crash in between leaves a row naming the orphan to delete at startup.
CREATE TABLE tidegate_pending_blocks (
    block_key   text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Records that decoded but that storage refuses for good (a value PostgreSQL rejects): kept
-- with the reason instead of blocking the records after them.
CREATE TABLE tidegate_dead_letters (
    id          bigserial PRIMARY KEY,
    sink        text NOT NULL,
    seqs        bigint[] NOT NULL,     -- spool records whose data this was
    reason      text NOT NULL,
    payload     bytea,                 -- the refused COPY stream or block index
    created_at  timestamptz NOT NULL DEFAULT now()
);
