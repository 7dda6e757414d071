-- Incidents an operator posts on the status pages (`upwatch incident`, POST /api/status/v1/incidents):
-- a title, the endpoints it affects (none: every page), and a timeline of updates, each with the
-- state the incident was in from then on. resolved_at is set by the update that resolves it.
-- (The detector's incidents table is a different thing: unusual behaviour, found by a model.)

CREATE TABLE status_incidents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    endpoints    text[] NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'investigating'
                 CHECK (state IN ('investigating', 'identified', 'monitoring', 'resolved')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX status_incidents_open_idx ON status_incidents (created_at DESC) WHERE resolved_at IS NULL;
CREATE INDEX status_incidents_resolved_idx ON status_incidents (resolved_at DESC);

CREATE TABLE status_incident_updates (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES status_incidents (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    state        text NOT NULL CHECK (state IN ('investigating', 'identified', 'monitoring', 'resolved')),
    message      text NOT NULL CHECK (length(message) BETWEEN 1 AND 5000)
);
CREATE INDEX status_incident_updates_incident_idx ON status_incident_updates (incident_id, at);
