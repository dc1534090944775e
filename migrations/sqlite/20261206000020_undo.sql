-- Undo (issue 36): an undo batch's requests give back what earlier
-- requests removed, as those requests' own records say.

-- What each undo request reverses: the request it undoes and what that
-- request's checkpoints say it removed (JSON), written with the undo batch.
CREATE TABLE undo_requests (
    request_id  TEXT PRIMARY KEY REFERENCES requests(id),
    undoes      TEXT NOT NULL REFERENCES requests(id),
    removal     TEXT NOT NULL
) WITHOUT ROWID;
-- A retry does not reopen a request an undo is about to give back.
CREATE INDEX undo_requests_undoes ON undo_requests(undoes);

-- The undo batch that started restoring a request: from then on it no
-- longer answers a resubmission (offboarding the person again makes the
-- calls again), a retry leaves it alone, and it no longer stands in the
-- way of undoing an older offboarding of the same person.
ALTER TABLE requests ADD COLUMN undone_by TEXT;

-- The checkpoints of earlier attempts, kept when a retry reopens a request
-- to plan again, so that an undo still knows what those attempts removed.
CREATE TABLE step_history (
    request_id  TEXT NOT NULL REFERENCES requests(id),
    step        TEXT NOT NULL,
    data        TEXT NOT NULL,
    finished_at INTEGER NOT NULL,
    PRIMARY KEY (request_id, step, finished_at)
) WITHOUT ROWID;
