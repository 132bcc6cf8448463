-- Which hours a metrics checkpoint's batch wrote, apart from its windows (see the core's
-- ReplayFilter): shutdown writes every open window in one batch and the open hours in the
-- next, so that no batch holds the rows of both, and a restart between the two must rebuild
-- the hours that were open. Until then a commit's hours and windows closed at the same time:
-- NULL reads as `closed_at_ns`.
ALTER TABLE tidegate_checkpoints ADD COLUMN hours_closed_at_ns bigint;
