-- Intake through the HTTP API and drop folders.

-- An Idempotency-Key on POST /v1/batches answers with the first response.
CREATE TABLE api_idempotency (
    key             TEXT PRIMARY KEY,
    body_sha256     TEXT NOT NULL,
    batch_id        TEXT NOT NULL,
    status          INTEGER NOT NULL,
    response        TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

-- Every file a drop folder took, by content: a file seen again is a
-- duplicate, and a file left in processing/ by a crash is finished.
CREATE TABLE dropfolder_files (
    sha256      TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    file_name   TEXT NOT NULL,
    batch_id    TEXT,
    state       TEXT NOT NULL,     -- intake, running, done, failed
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);
