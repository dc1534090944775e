-- Safety that holds by default.

-- The person the plan step resolved (the provider's own id for a user the
-- CSV named by email or in another case). At most one open request per
-- person and organization of a connection claims it: a second one is a
-- duplicate of the first. Set only by the plan step, never at intake.
ALTER TABLE requests ADD COLUMN subject TEXT;
CREATE UNIQUE INDEX requests_open_subject ON requests(provider, organization_id, subject)
    WHERE subject IS NOT NULL AND outcome IS NULL AND dry_run = 0;
-- Within one batch a person is offboarded once, even after their first
-- request finished. Rows enter it at planning, never at intake.
CREATE INDEX requests_batch_subject ON requests(batch_id, subject)
    WHERE subject IS NOT NULL;

-- Which rail halted a batch (snake_case), beside the sentence in halt_reason.
ALTER TABLE batches ADD COLUMN halt_code TEXT;
-- A reconciliation's roster size, read by the next run's min_roster_ratio.
ALTER TABLE batches ADD COLUMN roster_rows INTEGER;

-- What happened to a batch and who decided it: submitted, held, released,
-- halted, approved, cancelled, retried. An approval clears the halt on the
-- batch, never its event.
CREATE TABLE batch_events (
    id          INTEGER PRIMARY KEY,
    batch_id    TEXT NOT NULL REFERENCES batches(id),
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL       -- a JSON object
);
CREATE INDEX batch_events_batch ON batch_events(batch_id, id);
