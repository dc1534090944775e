-- Safety rails: halted batches wait for approval, cancellation, and the
-- record of reconciliation ticks.

ALTER TABLE batches ADD COLUMN halt_reason TEXT;

-- Set when a person cancels a request that a worker is running: no further
-- step starts, and the request ends `cancelled`.
ALTER TABLE requests ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

CREATE INDEX requests_batch ON requests(batch_id);

-- One row per reconciliation tick: the primary key is what keeps two
-- processes from running the same tick.
CREATE TABLE reconcile_ticks (
    job             TEXT NOT NULL,
    scheduled_at    INTEGER NOT NULL,   -- unix ms of the cron time
    batch_id        TEXT,
    started_at      INTEGER NOT NULL,
    PRIMARY KEY (job, scheduled_at)
) WITHOUT ROWID;
