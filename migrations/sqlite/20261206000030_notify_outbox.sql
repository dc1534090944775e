-- Notifications (issue 35): a durable outbox. An event is written in
-- the transaction of the change that causes it, with one delivery row per
-- channel that wants it; any process delivers, under a lease.

CREATE TABLE notify_events (
    id          TEXT PRIMARY KEY,           -- a ULID: the Offboard-Event-Id
    dedupe_key  TEXT NOT NULL UNIQUE,       -- kind/batch/occurrence: written once
    kind        TEXT NOT NULL,              -- batch.halted, batch.finished, …
    batch_id    TEXT,                       -- no reference: a purge keeps it
    facts       TEXT NOT NULL,              -- JSON known at the change
    payload     TEXT,                       -- the message, rendered once
    created_at  INTEGER NOT NULL
);
-- A purge takes a batch's notifications with it.
CREATE INDEX notify_events_batch ON notify_events(batch_id);
-- Retention of the events no batch holds (a failed listing, a file).
CREATE INDEX notify_events_created ON notify_events(created_at) WHERE batch_id IS NULL;

CREATE TABLE notify_deliveries (
    event_id            TEXT NOT NULL REFERENCES notify_events(id),
    channel             TEXT NOT NULL,
    state               TEXT NOT NULL,      -- pending, sent, dead
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_at             INTEGER NOT NULL,      -- unix ms: not tried before
    claim_owner         TEXT,
    claim_expires_at    INTEGER,               -- the database's clock
    last_error          TEXT,               -- never a secret or a URL
    sent_at             INTEGER,
    PRIMARY KEY (event_id, channel)
);
CREATE INDEX notify_deliveries_pending ON notify_deliveries(next_at)
    WHERE state = 'pending';
