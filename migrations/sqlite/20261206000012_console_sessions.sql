-- Web console sessions: the cookie holds a random id, only its SHA-256 is
-- kept here, with who signed in and the form token (CSRF) of the session.
CREATE TABLE console_sessions (
    id_sha256       TEXT PRIMARY KEY,
    actor           TEXT NOT NULL,
    role            TEXT NOT NULL,
    token_id        INTEGER,            -- the personal token signed in with
    csrf            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL
);
