-- request_logs_ingest_idx (0010) made the writer's spool replay idempotent through ON CONFLICT on
-- each log's client-generated ingest_id. It was the costliest of the table's four indexes to keep:
-- a random uuid lands on a random leaf page, so every COPYed row dirtied one more page (and, after
-- each checkpoint, logged it whole). COPY of 2,000-row batches on the 2-core machine, alternating
-- rounds: PostgreSQL 17.3-18.8 us of CPU and ~550 B of WAL per row with it, 13.2-15.4 us and
-- ~450 B without (docs/push.md, "Session 8"). A replay now skips rows already stored by looking
-- them up through the primary key (service_id, time, id) on their (service_id, time) and ingest_id
-- (prober/copy.py); only the writer that generated an ingest_id ever replays it (one spool per
-- writer, locked), so no unique constraint is needed to keep a row from being stored twice.
DROP INDEX IF EXISTS request_logs_ingest_idx;
