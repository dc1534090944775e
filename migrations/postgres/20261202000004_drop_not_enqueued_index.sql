-- Requests that never got a queue job are now found through
-- `requests_batch_unqueued` (batch, then id: ULIDs, so oldest first), which
-- holds exactly the rows this index held. Every stored row went into both
-- and came out of both when it was enqueued: two B-tree writes per row of
-- an intake for an index nothing needed.
DROP INDEX IF EXISTS requests_not_enqueued;
