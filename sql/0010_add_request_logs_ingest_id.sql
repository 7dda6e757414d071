-- The prober's writer gives every pushed request log a client-side uuid, so
-- that a batch replayed from the spool after an unacknowledged commit is
-- skipped by ON CONFLICT instead of stored twice. "time" is part of the
-- unique index because TimescaleDB requires the partitioning column in it.
ALTER TABLE request_logs ADD COLUMN ingest_id uuid;
CREATE UNIQUE INDEX request_logs_ingest_idx ON request_logs (ingest_id, time);
