-- Only finished requests answer a resubmission within the dedupe window, so
-- only they need to be in this index. Open requests used to enter it at
-- intake: a second random-key B-tree insert per row, which made a
-- million-row upload write every leaf of the index to the WAL over and
-- over. `finished_at >= $since` in the lookup implies the NOT NULL, so both
-- engines still use the index for it.
DROP INDEX requests_key_finished;
CREATE INDEX requests_key_finished ON requests(idempotency_key, finished_at)
    WHERE dry_run = 0 AND finished_at IS NOT NULL;
