-- Finds the jobs a dead worker holds (apalis's `reenqueue_orphaned` and
-- `reenqueue_abandoned`), now that `idx_jobs_status_run_at` is dropped on
-- start (src/store/connect.rs). Partial on exactly the terms those queries
-- use, so the lock and ack queries cannot pick it over the primary key.
CREATE INDEX IF NOT EXISTS offboard_jobs_held ON Jobs(lock_by)
WHERE status = 'Running' OR status = 'Queued';
