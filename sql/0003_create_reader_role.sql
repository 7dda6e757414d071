-- Grafana reads through this role: SELECT on upwatch's tables, nothing else,
-- and not the key hashes. Its password is set from UPWATCH_READER_PASSWORD by
-- `upwatch db migrate` (a role without a password cannot log in with one).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upwatch_reader') THEN
        CREATE ROLE upwatch_reader LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO upwatch_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO upwatch_reader;
REVOKE SELECT ON api_keys FROM upwatch_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO upwatch_reader;
