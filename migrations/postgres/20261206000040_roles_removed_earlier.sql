-- A retry of a batch that was a held preview previews its requests
-- again, and a preview's `roles_removed` holds what it would remove. What
-- the attempts before the retry did remove is kept here meanwhile, and is
-- the request's record again at its release or cancel.
ALTER TABLE requests ADD COLUMN roles_removed_earlier TEXT NOT NULL DEFAULT '';
-- An undo finds a person's request that a retry previews again (it
-- removes again once released) by the person's keys, as it finds their
-- finished ones.
CREATE INDEX requests_key_preview ON requests (idempotency_key COLLATE "C") WHERE dry_run = 2;
