-- What only one check kind measures (a DNS probe's rcode and answers, a ping's loss and RTTs, a TLS
-- handshake's version, cipher and chain expiry), as a flat JSON object; NULL for kinds with nothing
-- more than the common columns. Grafana's reader role can read it, so it never holds secrets.
ALTER TABLE probe_results ADD COLUMN details jsonb;
