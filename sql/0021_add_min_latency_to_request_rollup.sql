-- Analytics report the minimum latency over long ranges from the rollup too.
ALTER TABLE request_rollup_1m ADD COLUMN min_latency_ms double precision;
