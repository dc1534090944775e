-- Undo (issue 36; the same as SQLite's migration 20): an undo batch's
-- requests give back what earlier requests removed, as those requests' own
-- records say.

CREATE TABLE undo_requests (
    request_id  TEXT PRIMARY KEY REFERENCES requests(id),
    undoes      TEXT NOT NULL REFERENCES requests(id),
    removal     TEXT NOT NULL
);
-- A retry does not reopen a request an undo is about to give back.
CREATE INDEX undo_requests_undoes ON undo_requests(undoes);

ALTER TABLE requests ADD COLUMN undone_by TEXT;

CREATE TABLE step_history (
    request_id  TEXT NOT NULL REFERENCES requests(id),
    step        TEXT NOT NULL,
    data        TEXT NOT NULL,
    finished_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, step, finished_at)
);

-- An undo checks for a newer offboarding of the same person by the range
-- of their idempotency keys (any transfer department). The range needs
-- byte order, which the database's collation need not be; SQLite compares
-- bytes and uses `requests_key_finished`. Rows enter at finish, as there.
CREATE INDEX requests_person_finished ON requests (idempotency_key COLLATE "C", created_at)
    WHERE dry_run = 0 AND finished_at IS NOT NULL;
