-- On SQLite an intake stores its new requests held (enqueued = 2) and leaves their
-- jobs to be pushed when the batch may run (`src/queue/bulk.rs`), reading
-- them back through `requests_batch` by rowid. Marking each request
-- afterwards rewrote every row and took it out of
-- `requests_batch_unqueued`, which it had entered on insert: a fifth of
-- the writer's work per row. `push_pending` says the batch's held
-- requests still need jobs; `pushed_through` is the rowid the push has
-- reached, advanced in the transaction that writes each page's jobs.
ALTER TABLE batches ADD COLUMN push_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN pushed_through INTEGER NOT NULL DEFAULT 0;
