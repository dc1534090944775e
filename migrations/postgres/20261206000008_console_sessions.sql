-- Web console sessions (the same as SQLite's 12).
CREATE TABLE console_sessions (
    id_sha256       TEXT PRIMARY KEY,
    actor           TEXT NOT NULL,
    role            TEXT NOT NULL,
    token_id        BIGINT,
    csrf            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL
);
