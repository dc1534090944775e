-- Every destructive decision names a person.

-- Personal API tokens: only the SHA-256 of each is stored. A revoked or
-- expired token stays for the record; its name may be given again.
CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    token_sha256    TEXT NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    created_by      TEXT NOT NULL,
    expires_at      INTEGER,
    last_used_at    INTEGER,
    revoked_at      INTEGER
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;

-- What retention removed: one row per purged batch, with who purged it.
-- A batch half-purged when a process died is `purging` in batches and is
-- finished by the next purge.
CREATE TABLE purged_batches (
    id              INTEGER PRIMARY KEY,
    batch_id        TEXT NOT NULL UNIQUE,
    source          TEXT NOT NULL,
    source_name     TEXT,
    created_at      INTEGER NOT NULL,
    counts          TEXT NOT NULL,      -- JSON: outcome counts at purge time
    purged_at       INTEGER NOT NULL,
    actor           TEXT NOT NULL
);
