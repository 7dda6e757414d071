-- When the timescaledb extension is active (upwatch.migrate creates it when
-- the server offers it), time-series tables become hypertables with native
-- compression. Retention policies are set from the config at daemon start
-- (upwatch.storage), because the retention period is a setting, not schema.
-- On plain PostgreSQL this migration changes nothing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        RETURN;
    END IF;

    PERFORM create_hypertable('probe_results', 'time', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
    PERFORM create_hypertable('probe_rollup_1m', 'bucket', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM create_hypertable('request_logs', 'time', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE);
    PERFORM create_hypertable('request_rollup_1m', 'bucket', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM create_hypertable('anomalies', 'time', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);

    ALTER TABLE probe_results SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'endpoint_id', timescaledb.compress_orderby = 'time DESC');
    ALTER TABLE probe_rollup_1m SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'endpoint_id', timescaledb.compress_orderby = 'bucket DESC');
    ALTER TABLE request_logs SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'service_id', timescaledb.compress_orderby = 'time DESC, id DESC');
    ALTER TABLE request_rollup_1m SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'service_id', timescaledb.compress_orderby = 'bucket DESC');

    -- Late data (spool replays, pushed logs with old timestamps) lands in the
    -- uncompressed chunks of the last week.
    PERFORM add_compression_policy('probe_results', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('probe_rollup_1m', INTERVAL '30 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('request_logs', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('request_rollup_1m', INTERVAL '30 days', if_not_exists => TRUE);
END
$$;
