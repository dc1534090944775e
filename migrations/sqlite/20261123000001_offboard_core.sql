-- offboard's own tables. apalis keeps its queue (Jobs, Workers) in the same
-- database; both migrators ignore each other's versions.
-- Timestamps are unix milliseconds (INTEGER) so comparisons stay simple and
-- portable to the PostgreSQL schema.

CREATE TABLE batches (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,          -- cli, api, dropfolder, reconcile
    source_name     TEXT,                   -- file name or job name
    dry_run         INTEGER NOT NULL,
    stored_state    TEXT,                   -- NULL: derived from requests; or halted / cancelled
    rejected_rows   INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE requests (
    id                          TEXT PRIMARY KEY,
    batch_id                    TEXT NOT NULL REFERENCES batches(id),
    provider                    TEXT NOT NULL,
    organization_id             TEXT NOT NULL,
    user_id                     TEXT NOT NULL,
    transfer_to_department_id   TEXT,
    reason                      TEXT,
    effective_at                INTEGER,
    idempotency_key             TEXT NOT NULL,
    dry_run                     INTEGER NOT NULL,
    outcome                     TEXT,       -- NULL while the request is open
    attempts                    INTEGER NOT NULL DEFAULT 0,
    roles_removed               TEXT NOT NULL DEFAULT '',
    error_code                  TEXT,
    error_message               TEXT,
    claim_owner                 TEXT,       -- worker running the steps now
    claim_expires_at            INTEGER,
    enqueued                    INTEGER NOT NULL DEFAULT 0,
    created_at                  INTEGER NOT NULL,
    finished_at                 INTEGER
);

-- At most one open request per key: a resubmitted row links to it.
CREATE UNIQUE INDEX requests_open_key ON requests(idempotency_key)
    WHERE outcome IS NULL AND dry_run = 0;
CREATE INDEX requests_key_finished ON requests(idempotency_key, finished_at)
    WHERE dry_run = 0;
CREATE INDEX requests_not_enqueued ON requests(created_at) WHERE enqueued = 0;

-- One row per accepted CSV line: the request it became or linked to.
CREATE TABLE batch_entries (
    batch_id    TEXT NOT NULL REFERENCES batches(id),
    line        INTEGER NOT NULL,
    request_id  TEXT NOT NULL REFERENCES requests(id),
    PRIMARY KEY (batch_id, line)
) WITHOUT ROWID;
CREATE INDEX batch_entries_request ON batch_entries(request_id);

CREATE TABLE rejected_rows (
    batch_id        TEXT NOT NULL REFERENCES batches(id),
    line            INTEGER NOT NULL,
    code            TEXT NOT NULL,
    message         TEXT NOT NULL,
    provider        TEXT,
    organization_id TEXT,
    user_id         TEXT,
    PRIMARY KEY (batch_id, line)
) WITHOUT ROWID;

CREATE TABLE step_checkpoints (
    request_id  TEXT NOT NULL REFERENCES requests(id),
    step        TEXT NOT NULL,
    data        TEXT NOT NULL,      -- JSON written by the step
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, step)
) WITHOUT ROWID;

-- One row per outbound provider call attempt. Never headers or tokens.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    request_id  TEXT,
    provider    TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER,            -- NULL when no answer came (timeout, reset)
    error_code  TEXT,
    attempt     INTEGER NOT NULL,
    latency_ms  INTEGER NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX audit_events_request ON audit_events(request_id);
