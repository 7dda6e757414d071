-- Lease-based sharding (`prober.shard: auto`, prober/leases.py): the endpoints of a location are
-- split into a fixed number of slots (hash of the endpoint name), and the probers of that location
-- claim slots here with SELECT ... FOR UPDATE SKIP LOCKED, renewing them on a heartbeat. A slot
-- whose lease ran out is claimed by another prober, which raises its generation: the fencing token
-- that makes a prober coming back from a hang or a partition find out it lost the slot (a renewal
-- only succeeds for the generation it was given).
CREATE TABLE prober_slots (
    location    text NOT NULL,
    slot        integer NOT NULL CHECK (slot >= 0),
    holder      text,
    generation  bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz,
    claimed_at  timestamptz,
    PRIMARY KEY (location, slot)
);

-- The probers taking part, with a heartbeat: each claims its fair share, ceil(slots / live members),
-- so a prober that joins gets work (the others give back what they hold above their share).
CREATE TABLE prober_members (
    location    text NOT NULL,
    holder      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (location, holder)
);
