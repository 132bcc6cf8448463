-- The records every window of which a shutdown wrote, open or not, and those it had written
-- by the last hour flush (see the core's ReplayFilter). After a restart, a request the
-- shutdown left in the spool can reopen one of those windows with a lower sequence number
-- than theirs, so that later checkpoints' `open_from_seq` covers them while their flush times
-- say the window is open: a crash then must not replay them into it. NULL: written before
-- these were kept (loading derives them from a shutdown's checkpoint).
ALTER TABLE tidegate_checkpoints
    ADD COLUMN windows_written_floor             bigint,
    ADD COLUMN windows_written_extras            bigint[],
    ADD COLUMN hour_flush_windows_written_floor  bigint,
    ADD COLUMN hour_flush_windows_written_extras bigint[];
